"""The adapters resource: upload checks before anything is stored, who sees what, and
`loras` on a generation request (validation, the record, the price)."""

from __future__ import annotations

import pytest
from django.conf import settings

from accounts.models import Organization
from generations.adapters.models import Adapter, AdapterPrice
from generations.adapters.services import adapter_register_shared
from generations.models import Generation
from imagehub.storage import images
from tests.adapters import URL, demo_bytes, demo_file, tensors_file, upload

pytestmark = pytest.mark.django_db

GEN = "/v1/images/generations"


@pytest.fixture
def manage(tenant):
    return tenant.manage_client()


@pytest.fixture
def adapter(manage) -> dict:
    response = upload(manage, demo_bytes("demo-sd"), name="ink style")
    assert response.status_code == 201, response.content
    return response.json()


def stored_adapter_files() -> list[str]:
    found = []
    if not images.exists("adapters"):
        return found
    for folder in images.listdir("adapters")[0]:
        found += images.listdir(f"adapters/{folder}")[1]
    return found


# --- upload ---------------------------------------------------------------------------


def test_upload_answers_the_adapter_and_reads_rank_and_targets(manage, tenant):
    response = upload(manage, demo_bytes("demo-sd"), name="ink style")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("adp_") and body["object"] == "adapter"
    assert body["name"] == "ink style" and body["base_model"] == "demo-sd"
    assert body["bytes"] == demo_file("demo-sd").stat().st_size
    assert body["status"] == "ready" and body["shared"] is False
    assert isinstance(body["created_at"], int)
    assert body["rank"] == 4 and body["format"] == "peft"
    assert {"to_q", "to_k", "to_v", "to_out.0", "q_proj"} <= set(body["target_modules"])
    assert body["components"] == ["denoiser", "text_encoder"]
    adapter = Adapter.objects.get(pk=body["id"])
    assert adapter.organization == tenant.org
    with images.open(adapter.file.name, "rb") as handle:
        assert handle.read() == demo_bytes("demo-sd")


def test_a_kohya_layout_file_is_read_and_checked_against_the_model(manage):
    # kohya names: lora_unet_<module with underscores>, lora_te_<text encoder module>.
    q = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    kohya = tensors_file(
        {
            f"{q}.lora_down.weight": (2, 64),
            f"{q}.lora_up.weight": (64, 2),
            f"{q}.alpha": (),
            f"{te}.lora_down.weight": (2, 32),
            f"{te}.lora_up.weight": (32, 2),
        }
    )
    response = upload(manage, kohya)
    assert response.status_code == 201, response.content
    assert response.json()["format"] == "kohya" and response.json()["rank"] == 2


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x80\x04\x95" + b"\x00" * 64, "pickled"),
        (b"PK\x03\x04" + b"\x00" * 64, "pickled"),
        (b"definitely not a tensor file at all" * 4, "safetensors"),
        (tensors_file({"down_blocks.0.resnets.0.conv1.weight": (4, 4)}), "not part of a LoRA"),
        (tensors_file({"unet.mid_block.attn.to_q.lora_A.weight": (2, 32)}), "only one"),
    ],
    ids=["pickle", "torch-zip", "garbage", "full-checkpoint", "half-pair"],
)
def test_an_unreadable_or_non_lora_file_is_a_400_naming_file(manage, data, words):
    before = stored_adapter_files()
    response = upload(manage, data)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == "file" and words in error["message"]
    assert Adapter.objects.count() == 0 and stored_adapter_files() == before


def test_a_file_over_the_size_limit_is_a_400_naming_file(manage, settings):
    settings.MAX_ADAPTER_BYTES = 1024
    response = upload(manage, demo_bytes("demo-sd"))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"
    assert str(1024) in response.json()["error"]["message"]
    assert Adapter.objects.count() == 0


def test_an_adapter_of_another_base_model_is_a_400_naming_base_model(manage):
    before = stored_adapter_files()
    response = upload(manage, demo_bytes("demo-flux"), base_model="demo-sd")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == "base_model" and "not modules of model 'demo-sd'" in error["message"]
    assert Adapter.objects.count() == 0 and stored_adapter_files() == before


def test_tensors_of_the_wrong_size_for_the_model_are_a_400_naming_base_model(manage):
    module = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    wrong = tensors_file({f"{module}.lora_A.weight": (4, 48), f"{module}.lora_B.weight": (64, 4)})
    response = upload(manage, wrong)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "base_model" and "48" in error["message"]


def test_a_kohya_file_with_the_original_checkpoint_names_is_a_400_naming_file(manage):
    module = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    original = tensors_file(
        {f"{module}.lora_down.weight": (4, 64), f"{module}.lora_up.weight": (64, 4)}
    )
    response = upload(manage, original)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "file" and "original checkpoint's module names" in error["message"]


def test_an_unknown_base_model_or_missing_file_is_a_400(manage):
    response = upload(manage, demo_bytes(), base_model="no-such-model")
    assert response.status_code == 400 and response.json()["error"]["param"] == "base_model"
    response = manage.post(URL, {"base_model": "demo-sd"}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"


def test_uploading_and_deleting_need_a_manage_key(api, adapter):
    response = upload(api, demo_bytes())
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    assert api.delete(f"{URL}/{adapter['id']}").status_code == 403
    # Any key of the organization lists and reads them.
    assert api.get(URL).json()["data"][0]["id"] == adapter["id"]
    assert api.get(f"{URL}/{adapter['id']}").json()["name"] == "ink style"


def test_delete_removes_the_row_and_the_file(manage, adapter, django_capture_on_commit_callbacks):
    name = Adapter.objects.get(pk=adapter["id"]).file.name
    with django_capture_on_commit_callbacks(execute=True):
        response = manage.delete(f"{URL}/{adapter['id']}")
    assert response.status_code == 200 and response.json()["deleted"] is True
    assert not Adapter.objects.filter(pk=adapter["id"]).exists()
    assert not images.exists(name)
    assert manage.get(f"{URL}/{adapter['id']}").status_code == 404


# --- isolation ------------------------------------------------------------------------


def test_another_organizations_adapter_is_a_404_everywhere(adapter, other_tenant):
    other = other_tenant.client()
    other_manage = other_tenant.manage_client()
    assert other.get(URL).json()["data"] == []
    for client, method in ((other, "get"), (other_manage, "delete")):
        response = getattr(client, method)(f"{URL}/{adapter['id']}")
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"No adapter with id '{adapter['id']}'."
    response = other.post(
        GEN, {"prompt": "x", "loras": [{"id": adapter["id"], "scale": 1}]}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "loras"
    assert Adapter.objects.filter(pk=adapter["id"]).exists()
    assert not Generation.objects.exists()


def test_shared_adapters_are_listed_for_everyone_and_cannot_be_deleted(tenant, other_tenant):
    adapter_register_shared(
        adapter_id="adp_demo_sd_style", name="demo", base_model="demo-sd", path=demo_file()
    )
    for who in (tenant, other_tenant):
        listed = who.client().get(URL).json()["data"]
        assert [(a["id"], a["shared"]) for a in listed] == [("adp_demo_sd_style", True)]
    response = tenant.manage_client().delete(f"{URL}/adp_demo_sd_style")
    assert response.status_code == 403
    assert Adapter.objects.filter(pk="adp_demo_sd_style").exists()


# --- loras on a request ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("loras", "words"),
    [
        ([{"id": "adp_x", "scale": 2.5}], "between -2 and 2"),
        ([{"id": "adp_x", "scale": "much"}], "must be a number"),
        ([{"scale": 1}], "adapter 'id'"),
        ([{"id": "adp_x", "weight": 1}], "unknown field 'weight'"),
        ([{"id": f"adp_{i}"} for i in range(4)], "At most 3 adapters"),
        ("adp_x", "must be a list"),
    ],
)
def test_malformed_loras_are_a_400_naming_loras(api, loras, words, stub_broker):
    response = api.post(GEN, {"prompt": "x", "loras": loras}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == "loras" and words in error["message"]


def test_the_limit_per_request_is_a_setting(api, settings, stub_broker):
    settings.MAX_ADAPTERS_PER_REQUEST = 1
    loras = [{"id": "adp_a"}, {"id": "adp_b"}]
    response = api.post(GEN, {"prompt": "x", "loras": loras}, format="json")
    assert "At most 1 adapters" in response.json()["error"]["message"]


def test_an_adapter_for_another_base_model_is_a_400_naming_loras(api, adapter, stub_broker):
    body = {"prompt": "x", "model": "demo-flux", "loras": [{"id": adapter["id"], "scale": 1}]}
    response = api.post(GEN, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "loras" and "for model 'demo-sd'" in error["message"]


def test_the_record_and_the_answer_list_the_adapters(api, adapter, stub_broker):
    body = {"prompt": "x", "loras": [{"id": adapter["id"], "scale": -0.5}]}
    response = api.post(GEN, body, format="json", HTTP_PREFER="respond-async")
    assert response.status_code == 202, response.content
    listed = [{"id": adapter["id"], "name": "ink style", "scale": -0.5, "price_per_image": 0}]
    assert response.json()["loras"] == listed
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.params["loras"] == [
        {"id": adapter["id"], "name": "ink style", "scale": -0.5, "surcharge": 0}
    ]
    assert api.get(f"{GEN}/{generation.id}").json()["loras"] == listed


# --- prices ---------------------------------------------------------------------------


def _price(api, loras, **body) -> tuple[int, Generation]:
    body = {"prompt": "x", "n": 2, "size": "64x64", "num_inference_steps": 2, **body}
    if loras is not None:
        body["loras"] = loras
    response = api.post(GEN, body, format="json", HTTP_PREFER="respond-async")
    assert response.status_code == 202, response.content
    generation = Generation.objects.get(pk=response.json()["id"])
    return generation.price, generation


def test_the_surcharge_is_held_per_image_and_per_adapter(api, manage, adapter, tenant, stub_broker):
    second = upload(manage, demo_bytes(), name="second").json()
    base, _ = _price(api, None)
    # No price set anywhere: the setting's default (0).
    assert _price(api, [{"id": adapter["id"]}])[0] == base
    AdapterPrice.objects.create(model="demo-sd", price_per_image=7_000)
    AdapterPrice.objects.create(
        adapter=Adapter.objects.get(pk=second["id"]), price_per_image=50_000
    )
    both = [{"id": adapter["id"], "scale": 1}, {"id": second["id"], "scale": 0.3}]
    price, generation = _price(api, both)
    # n=2 images × (7,000 for the model's adapters + 50,000 for the second one's own price).
    assert price == base + 2 * (7_000 + 50_000)
    assert generation.unit_price * 2 == price
    assert [lora["surcharge"] for lora in generation.params["loras"]] == [7_000, 50_000]
    # The hold is the whole price, adapters included.
    org = Organization.objects.get(pk=tenant.org.pk)
    assert org.credits_held == sum(g.price for g in Generation.objects.all())
    # An adapter at scale 0 is not applied, and not charged.
    assert _price(api, [{"id": second["id"], "scale": 0}])[0] == base


def test_the_default_surcharge_is_a_setting(api, adapter, settings, stub_broker):
    base, _ = _price(api, None)
    settings.ADAPTER_PRICE_PER_IMAGE = 1_234
    assert _price(api, [{"id": adapter["id"]}])[0] == base + 2 * 1_234


def test_settings_have_the_documented_defaults():
    assert settings.MAX_ADAPTER_BYTES == 512 * 1024 * 1024
    assert settings.MAX_ADAPTERS_PER_REQUEST == 3
