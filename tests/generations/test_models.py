"""GET /v1/models and the catalog behind it."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from generations import catalog


def test_lists_models_in_openai_format(api):
    response = api.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    ids = {model["id"] for model in body["data"]}
    assert {"demo-sd", "demo-flux", "flux.1-schnell", "sdxl-turbo", "sd-1.5"} <= ids
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int) and model["owned_by"]


def test_retrieve_by_id_and_by_hub_id(api):
    assert api.get("/v1/models/demo-sd").json()["default_size"] == "256x256"
    flux = api.get("/v1/models/black-forest-labs/FLUX.1-schnell").json()
    assert flux["id"] == "flux.1-schnell" and flux["max_steps"] == 8


def test_models_need_a_key(client, db):
    assert client.get("/v1/models").status_code == 401


def test_catalog_file_overrides_adds_and_removes(settings, tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            [
                {"id": "flux.1-schnell", "max_n": 2},
                {"id": "sd-1.5", "enabled": False},
                {
                    "id": "my-model",
                    "source": "/models/mine",
                    "architecture": "sdxl",
                    "default_size": [768, 768],
                },
            ]
        )
    )
    settings.MODEL_CATALOG_FILE = str(path)
    catalog.catalog.cache_clear()
    try:
        assert catalog.get_model("flux.1-schnell").max_n == 2
        assert catalog.get_model("sd-1.5") is None
        assert catalog.get_model("my-model").default_size == (768, 768)
    finally:
        catalog.catalog.cache_clear()


@pytest.mark.parametrize(
    "content",
    [
        '{"id": "x"}',
        "[{}]",
        '[{"id": "x", "colour": "red"}]',
        '[{"id": "x", "architecture": "gan"}]',
        "not json",
    ],
)
def test_bad_catalog_file_fails_fast(settings, tmp_path, content):
    path = tmp_path / "catalog.json"
    path.write_text(content)
    settings.MODEL_CATALOG_FILE = str(path)
    catalog.catalog.cache_clear()
    try:
        with pytest.raises(ImproperlyConfigured):
            catalog.catalog()
    finally:
        catalog.catalog.cache_clear()


def test_openapi_schema_and_docs(client, db):
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert "/v1/images/generations" in schema.json()["paths"]
    docs = client.get("/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_scheduler_and_queue_per_model(settings, tmp_path, monkeypatch):
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps(
            [
                {"id": "demo-sd", "scheduler": "DPMSolverMultistepScheduler", "queue": "gpu-small"},
            ]
        )
    )
    settings.MODEL_CATALOG_FILE = str(path)
    catalog.catalog.cache_clear()
    try:
        assert catalog.queues() == [settings.DRAMATIQ_QUEUE, "gpu-small"]
        from generations import services
        from imagehub.broker import broker

        sent = []
        monkeypatch.setattr(broker, "enqueue", lambda message, **kw: sent.append(message))
        services.generation_dispatch(generation_id="gen_x", model="demo-sd")
        services.generation_dispatch(generation_id="gen_y", model="demo-flux")
        assert [(m.queue_name, m.args) for m in sent] == [
            ("gpu-small", ("gen_x",)),
            (settings.DRAMATIQ_QUEUE, ("gen_y",)),
        ]
        from generations.engine.pipelines import Engine

        pipe = Engine(device="cpu").pipeline(catalog.get_model("demo-sd"))
        assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    finally:
        catalog.catalog.cache_clear()


def test_unknown_scheduler_fails_fast(settings, tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps([{"id": "demo-sd", "scheduler": "MagicScheduler"}]))
    settings.MODEL_CATALOG_FILE = str(path)
    catalog.catalog.cache_clear()
    try:
        with pytest.raises(ImproperlyConfigured, match="scheduler"):
            catalog.catalog()
    finally:
        catalog.catalog.cache_clear()


def test_openapi_schema_documents_what_a_model_does(client, db):
    schema = client.get("/openapi.json").json()
    listed = schema["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"] == {"$ref": "#/components/schemas/ModelList"}
    components = schema["components"]["schemas"]
    model = components["ModelObject"]["properties"]
    enum = components[model["capabilities"]["items"]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert enum == [
        "generate",
        "edit_instruction",
        "edit_image_to_image",
        "inpaint",
        "variation",
        "partial_images",
    ]
    assert model["max_input_images"]["type"] == "integer"
    assert "400 naming `image`" in model["max_input_images"]["description"]


def test_models_page_and_key_form_show_what_each_model_does(extra_model, tenant):
    from django.test import Client

    extra_model(id="qwen-edit", source="Qwen/Qwen-Image-Edit-2509",
                architecture="qwen-image-edit-plus")  # fmt: skip
    browser = Client()
    browser.force_login(tenant.user)
    page = browser.get("/models/")
    assert page.status_code == 200
    text = page.content.decode()
    row = text[text.index('data-model="qwen-edit"') :].split("</tr>", 1)[0]
    assert ">instruction edit<" in row and ">partial images<" in row and ">generate<" not in row
    assert ">3<" in row  # reference images of one edit
    demo = text[text.index('data-model="demo-sd"') :].split("</tr>", 1)[0]
    assert ">inpaint<" in demo and ">instruction edit<" not in demo
    form = browser.get("/keys/").content.decode()
    box = form[form.index('value="qwen-edit"') :].split("</span>", 1)[0]
    assert "instruction edit, partial images" in box
    # The label's text stays the model id (tests and people find the box by it).
    assert '<label class="check">' in form and "qwen-edit</label>" in form
    assert Client().get("/models/").status_code == 302  # signed-in people only
