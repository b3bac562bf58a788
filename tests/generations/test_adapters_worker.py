"""Adapters on the worker: applied per request on the cached pipeline, never leaking into
the next request, grouped in batches by adapter set, and a bad adapter failing its own
job alone (hold released, pipeline unharmed)."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.base import ContentFile

from accounts.models import Organization
from generations.adapters.models import Adapter
from generations.catalog import get_model
from generations.engine import AdapterError, AdapterUse, RunRequest
from generations.models import Generation
from generations.worker import runtime
from imagehub.storage import images
from tests.adapters import demo_bytes, demo_file, tensors_file, upload
from tests.generations.test_api import decode, nearly_equal
from tests.generations.test_batching import finished, submit_held

pytestmark = pytest.mark.django_db(transaction=True)

GEN = "/v1/images/generations"


def pixels(body: dict) -> np.ndarray:
    assert body["status"] == "succeeded", body
    return np.asarray(decode(body["data"][0]).convert("RGB"))


def generate(api, model="demo-sd", loras=None, seed=5, **extra) -> dict:
    body = {"model": model, "prompt": "a castle", "size": "64x64", "seed": seed, **extra}
    body["num_inference_steps"] = 2
    if loras is not None:
        body["loras"] = loras
    response = api.post(GEN, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def adapters(tenant):
    manage = tenant.manage_client()

    def make(model="demo-sd", name="style", data=None):
        response = upload(manage, data or demo_bytes(model), base_model=model, name=name)
        assert response.status_code == 201, response.content
        return response.json()["id"]

    return make


@pytest.mark.parametrize("model", ["demo-sd", "demo-flux"])
def test_scale_zero_is_the_base_image_and_a_scale_changes_it(api, adapters, model):
    adapter = adapters(model)
    base = pixels(generate(api, model))
    zero = generate(api, model, loras=[{"id": adapter, "scale": 0}])
    assert zero["loras"][0]["scale"] == 0
    assert np.array_equal(pixels(zero), base)
    styled = pixels(generate(api, model, loras=[{"id": adapter, "scale": 1.0}]))
    assert not np.array_equal(styled, base)
    # The same request again: the same picture (the adapter cached, not reloaded).
    loads = runtime.get_engine().adapters.loads
    again = generate(api, model, loras=[{"id": adapter, "scale": 1.0}])
    assert np.array_equal(pixels(again), styled)
    assert runtime.get_engine().adapters.loads == loads


@pytest.mark.parametrize("model", ["demo-sd", "demo-flux"])
def test_no_adapter_leaks_into_the_next_request(api, adapters, model):
    first, second = adapters(model, "one"), adapters(model, "two")
    base = pixels(generate(api, model))
    one = pixels(generate(api, model, loras=[{"id": first, "scale": 0.8}]))
    assert np.array_equal(pixels(generate(api, model)), base)
    two = pixels(generate(api, model, loras=[{"id": second, "scale": 0.8}]))
    both = pixels(
        generate(api, model, loras=[{"id": first, "scale": 0.8}, {"id": second, "scale": 0.8}])
    )
    assert np.array_equal(pixels(generate(api, model, loras=[{"id": first, "scale": 0.8}])), one)
    assert not np.array_equal(both, one) and not np.array_equal(both, two)
    assert np.array_equal(pixels(generate(api, model)), base)


def test_adapters_apply_to_edits(api, adapters):
    import base64
    import io

    adapter = adapters()
    source = base64.b64decode(generate(api)["data"][0]["b64_json"])

    def edit(loras):
        data = {"image": io.BytesIO(source), "prompt": "paint it", "seed": "3", "model": "demo-sd"}
        data["image"].name = "in.png"
        if loras:
            # What the OpenAI SDK sends for extra_body={"loras": [...]} on a multipart call.
            data["loras[][id]"] = [lora["id"] for lora in loras]
            data["loras[][scale]"] = [str(lora["scale"]) for lora in loras]
        response = api.post("/v1/images/edits", data, format="multipart")
        assert response.status_code == 200, response.content
        return response.json()

    plain, styled = edit(None), edit([{"id": adapter, "scale": 1.5}])
    assert styled["loras"][0]["id"] == adapter and styled["loras"][0]["scale"] == 1.5
    assert not np.array_equal(pixels(plain), pixels(styled))
    assert np.array_equal(pixels(edit(None)), pixels(plain))


def test_last_use_is_recorded(api, adapters):
    adapter = adapters()
    assert Adapter.objects.get(pk=adapter).last_used_at is None
    generate(api, loras=[{"id": adapter}])
    assert Adapter.objects.get(pk=adapter).last_used_at is not None


# --- failures -------------------------------------------------------------------------


def _held(tenant) -> int:
    return Organization.objects.get(pk=tenant.org.pk).credits_held


def failed_sync(api, body: dict) -> dict:
    """A sync request whose job failed with adapter_error: 422, then its record."""
    response = api.post(GEN, body, format="json")
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "adapter_error"
    record = api.get(f"{GEN}/{error['generation_id']}").json()
    assert record["status"] == "failed" and record["error"]["code"] == "adapter_error"
    return record


def test_a_corrupt_stored_file_fails_its_job_alone(api, adapters, tenant, settings):
    adapter = adapters()
    name = Adapter.objects.get(pk=adapter).file.name
    images.delete(name)
    images.save(name, ContentFile(b"\x00" * 512))  # altered in storage after the upload
    base = pixels(generate(api))
    balance = Organization.objects.get(pk=tenant.org.pk).credit_balance
    body = failed_sync(api, {"prompt": "a castle", "size": "64x64", "loras": [{"id": adapter}]})
    assert "differs from the one uploaded" in body["error"]["message"]
    assert _held(tenant) == 0
    assert Organization.objects.get(pk=tenant.org.pk).credit_balance == balance
    # The adapter is marked; a new request naming it is refused before anything is held.
    assert Adapter.objects.get(pk=adapter).status == "failed"
    again = api.post(GEN, {"prompt": "x", "loras": [{"id": adapter}]}, format="json")
    assert again.status_code == 400 and again.json()["error"]["param"] == "loras"
    assert np.array_equal(pixels(generate(api)), base)


def test_an_adapter_diffusers_cannot_load_fails_its_job_and_leaves_the_pipeline_clean(api, tenant):
    """An adapter that passed the upload checks (say its model's files were not on the
    web host) but does not fit the model: the load fails on the device."""
    data = tensors_file(
        {
            "unet.no_such_block.to_q.lora_A.weight": (4, 64),
            "unet.no_such_block.to_q.lora_B.weight": (64, 4),
        }
    )
    import hashlib

    adapter = Adapter(
        organization=tenant.org, name="bad", base_model="demo-sd", bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(), layout="peft", rank=4,
    )  # fmt: skip
    adapter.file.save(f"adapters/{tenant.org.pk}/{adapter.pk}.safetensors", ContentFile(data))
    base = pixels(generate(api))
    body = failed_sync(
        api, {"prompt": "a castle", "size": "64x64", "seed": 5, "loras": [{"id": adapter.pk}]}
    )
    assert _held(tenant) == 0
    assert Generation.objects.get(pk=body["id"]).charged == 0
    engine = runtime.get_engine()
    assert adapter.pk not in engine.adapters.loaded(get_model("demo-sd"))
    assert np.array_equal(pixels(generate(api)), base)


def test_a_deleted_adapter_fails_the_queued_job_naming_it(api, adapters, tenant, stub_broker):
    adapter = adapters()
    response = api.post(
        GEN, {"prompt": "x", "loras": [{"id": adapter}]}, format="json",
        HTTP_PREFER="respond-async",
    )  # fmt: skip
    generation_id = response.json()["id"]
    tenant.manage_client().delete(f"/v1/adapters/{adapter}")
    from generations.worker.jobs import run_generation

    run_generation(generation_id=generation_id)
    generation = Generation.objects.get(pk=generation_id)
    assert generation.status == "failed" and generation.error_code == "adapter_error"
    assert "was deleted" in generation.error_message
    assert _held(tenant) == 0


# --- batching and the LRU -------------------------------------------------------------


@pytest.fixture
def batcher(settings):
    settings.BATCHING = True
    settings.BATCH_WAIT_MS = 10
    batcher = runtime.batcher()
    yield batcher
    batcher.resume()


def test_batches_group_requests_by_adapter_set(api, adapters, batcher):
    first, second = adapters(name="one"), adapters(name="two")
    one, two, off = [{"id": first}], [{"id": second}], [{"id": first, "scale": 0}]
    sets = [None, one, None, two, one, off]
    bodies = []
    for i, loras in enumerate(sets):
        body = {"prompt": f"p{i}", "n": 1, "seed": i, "size": "64x64", "num_inference_steps": 2}
        if loras:
            body["loras"] = loras
        bodies.append(body)
    calls = len(batcher.history)
    ids = submit_held(api, batcher, bodies)
    batcher.resume()
    results = [finished(api, generation_id) for generation_id in ids]
    assert [r["status"] for r in results] == ["succeeded"] * 6
    records = list(batcher.history)[calls:]
    # base + base + scale 0 (no adapter applied) | first + first | second
    assert sorted(r.jobs for r in records) == [1, 2, 3]
    # An adapter request batched gives what it gives alone (up to a batched matmul's last
    # bit, as for base requests).
    alone = api.post(GEN, bodies[1], format="json").json()
    assert nearly_equal(alone["data"][0], results[1]["data"][0])


def test_a_lone_adapter_request_is_not_held_for_a_batch(api, adapters, settings, batcher):
    settings.BATCH_WAIT_MS = 10_000
    adapter = adapters()
    body = generate(api, loras=[{"id": adapter}])
    # The device started on it at once: it waited for no partner that was not coming.
    assert body["timings"]["device_wait"] < 5


def test_least_recently_used_adapters_leave_the_device_within_their_budget(api, adapters):
    engine = runtime.get_engine()
    ids = [adapters(name=f"a{i}") for i in range(3)]
    size = demo_file().stat().st_size
    previous = engine.adapters.budget_bytes
    engine.adapters.budget_bytes = 2 * size
    try:
        for adapter in ids:
            generate(api, loras=[{"id": adapter}])
        loaded = engine.adapters.loaded(get_model("demo-sd"))
        assert ids[0] not in loaded and loaded[-2:] == ids[1:]
        assert engine.adapters.used_bytes() <= 2 * size
        # Counted in the model cache: its entry carries them.
        assert engine.cache.entry(get_model("demo-sd")).adapters.keys() == set(ids[1:])
    finally:
        engine.adapters.budget_bytes = previous


def test_the_engine_raises_adapter_error_for_a_missing_file():
    engine = runtime.get_engine()
    spec = get_model("demo-sd")
    request = RunRequest(
        spec=spec, prompt="x", negative_prompt="", width=64, height=64, steps=1,
        guidance_scale=5.0, seeds=[1],
        adapters=(AdapterUse(id="adp_missing", path="/nonexistent.safetensors", scale=1.0),),
    )  # fmt: skip
    with pytest.raises(AdapterError) as raised:
        engine.run(request)
    assert raised.value.adapter_id == "adp_missing"
    assert "adp_missing" not in engine.adapters.loaded(spec)


def test_usage_api_and_csv_show_the_adapters(api, adapters):
    first, second = adapters(name="one"), adapters(name="two")
    generate(api)
    generate(api, loras=[{"id": second, "scale": 0.5}, {"id": first}])
    generate(api, loras=[{"id": first, "scale": 0}])  # not applied: usage without adapters
    rows = api.get("/v1/usage", {"group_by": "adapters"}).json()["data"]
    by_set = {row["adapters"]: row for row in rows}
    assert set(by_set) == {"", "+".join(sorted([first, second]))}
    assert by_set[""]["requests"] == 2 and by_set["+".join(sorted([first, second]))]["images"] == 1
    csv = api.get("/v1/usage", {"group_by": "model,adapters", "format": "csv"})
    lines = csv.content.decode().splitlines()
    assert lines[0].startswith("bucket_start,model,adapters,requests")
    assert any(first in line and second in line for line in lines[1:])
