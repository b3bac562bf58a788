"""Bad input gets a 4xx in OpenAI's envelope naming the bad parameter; never a 500."""

from __future__ import annotations

import json

import pytest

URL = "/v1/images/generations"


def assert_error(response, status: int, *, param=None, code=None):
    assert response.status_code == status, response.content
    assert response["x-request-id"]
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": "p", "n": 0}, "n"),
        ({"prompt": "p", "n": 11}, "n"),
        ({"prompt": "p", "n": "many"}, "n"),
        ({"prompt": "p", "n": 1.5}, "n"),
        ({"prompt": "p", "size": "big"}, "size"),
        ({"prompt": "p", "size": "100x100"}, "size"),
        ({"prompt": "p", "size": "4096x4096"}, "size"),
        ({"prompt": "p", "size": "0x0"}, "size"),
        ({"prompt": "p", "size": 512}, "size"),
        ({"prompt": "p", "width": 256}, "height"),
        ({"prompt": "p", "width": 250, "height": 256}, "width"),
        ({"prompt": "p", "quality": "ultra"}, "quality"),
        ({"prompt": "p", "style": "baroque"}, "style"),
        ({"prompt": "p", "response_format": "gif"}, "response_format"),
        ({"prompt": "p", "output_format": "bmp"}, "output_format"),
        ({"prompt": "p", "output_compression": 101}, "output_compression"),
        ({"prompt": "p", "num_inference_steps": 0}, "num_inference_steps"),
        ({"prompt": "p", "num_inference_steps": 500}, "num_inference_steps"),
        ({"prompt": "p", "num_steps": 500}, "num_steps"),
        ({"prompt": "p", "guidance_scale": -1}, "guidance_scale"),
        ({"prompt": "p", "guidance_scale": "lots"}, "guidance_scale"),
        ({"prompt": "p", "seed": -5}, "seed"),
        ({"prompt": "p", "seed": 2**64}, "seed"),
        ({"prompt": "p", "user": "u" * 300}, "user"),
        ({"prompt": "p", "background": "transparent"}, "background"),
        ({"prompt": "p", "stream": "maybe"}, "stream"),
        ({"prompt": "p", "stream": True, "partial_images": 4}, "partial_images"),
        ({"prompt": "p", "negativ_prompt": "typo"}, "negativ_prompt"),
        ({"prompt": "p", "model": "demo-flux", "negative_prompt": "no"}, "negative_prompt"),
        ({"prompt": "p", "model": "demo-flux", "size": "264x264"}, "size"),
    ],
)
def test_invalid_fields_name_the_param(api, body, param):
    error = assert_error(api.post(URL, body, format="json"), 400, param=param)
    assert error["type"] == "invalid_request_error"


def test_malformed_json(api):
    response = api.post(URL, '{"prompt": "oops",', content_type="application/json")
    assert_error(response, 400, code="invalid_json")


@pytest.mark.parametrize("body", ["[1, 2]", '"just a string"', "null", "42"])
def test_body_that_is_not_an_object(api, body):
    assert_error(api.post(URL, body, content_type="application/json"), 400)


def test_wrong_content_type(api):
    response = api.post(URL, "prompt=hi", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, code="unsupported_media_type")


def test_oversized_body(api, settings):
    body = json.dumps({"prompt": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    assert_error(api.post(URL, body, content_type="application/json"), 413)


def test_missing_and_unknown_keys(client, tenant):
    response = client.post(URL, {"prompt": "p"}, content_type="application/json")
    assert_error(response, 401, code="missing_api_key")
    assert response["WWW-Authenticate"].startswith("Bearer")
    for secret in ("nonsense", "ihk_aaaaaaaaaaaa_" + "x" * 43, tenant.secret[:-1] + "!"):
        response = client.post(
            URL,
            {"prompt": "p"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}",
        )
        error = assert_error(response, 401, code="invalid_api_key")
        assert secret not in error["message"]


def test_unknown_model(api):
    assert_error(
        api.post(URL, {"prompt": "p", "model": "dall-e-9"}, format="json"),
        404,
        param="model",
        code="model_not_found",
    )
    assert_error(api.get("/v1/models/dall-e-9"), 404, code="model_not_found")


def test_unknown_url_and_method(api):
    assert_error(api.get("/v1/nothing-here"), 404)
    assert_error(api.delete(URL), 405)


@pytest.mark.django_db(transaction=True)
def test_missing_demo_files_give_503_with_the_reason(api, extra_model, tmp_path):
    extra_model(id="ghost", source=str(tmp_path / "never-built"), architecture="sd", demo=True)
    response = api.post(URL, {"prompt": "p", "model": "ghost"}, format="json")
    error = assert_error(response, 503, code="model_unavailable")
    assert "build_demo_models" in error["message"]


@pytest.mark.django_db(transaction=True)
def test_unloadable_hub_model_gives_503(api, extra_model):
    # No network here (the test settings set HF_HUB_OFFLINE): the load fails cleanly.
    extra_model(id="nowhere", source="example-org/does-not-exist", architecture="sd")
    response = api.post(URL, {"prompt": "p", "model": "nowhere"}, format="json")
    error = assert_error(response, 503, code="model_unavailable")
    assert "nowhere" in error["message"]


@pytest.mark.django_db(transaction=True)
def test_key_limited_to_some_models(tenant):
    tenant.key.allowed_models = ["demo-flux"]
    tenant.key.save(update_fields=["allowed_models"])
    api = tenant.client()
    # The default model is demo-sd, so naming no model is refused as well.
    for body in ({"prompt": "p"}, {"prompt": "p", "model": "demo-sd"}):
        assert_error(
            api.post(URL, body, format="json"), 403, param="model", code="model_not_allowed"
        )
    assert api.post(URL, {"prompt": "p", "model": "demo-flux"}, format="json").status_code == 200
