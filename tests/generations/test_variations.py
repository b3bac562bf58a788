"""POST /v1/images/variations: image-to-image of the upload with an empty prompt."""

from __future__ import annotations

import base64
import io

import pytest
from imagefiles import gradient_png, upload
from PIL import Image

from generations.models import Generation

URL = "/v1/images/variations"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", ["demo-sd", "demo-flux"])
def test_variations_of_an_image(api, model):
    response = api.post(
        URL,
        {"image": upload(gradient_png((128, 96))), "model": model, "n": 2, "seed": 9},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert len(body["data"]) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) for item in body["data"]]
    assert all(image.size == (128, 96) for image in images)
    assert body["data"][0]["b64_json"] != body["data"][1]["b64_json"]
    generation = Generation.objects.get(pk=body["id"])
    assert generation.kind == "variation" and generation.prompt == ""
    assert generation.params["strength"] == 0.6
    assert body["usage"]["input_tokens_details"]["image_tokens"] > 0


@pytest.mark.django_db(transaction=True)
def test_variation_url_response_and_size(api):
    response = api.post(
        URL,
        {"image": upload(gradient_png()), "size": "128x128", "response_format": "url"},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    assert "url" in response.json()["data"][0]


@pytest.mark.django_db
def test_variation_rejects_a_mask_and_a_bad_image(api):
    response = api.post(
        URL, {"image": upload(gradient_png()), "mask": upload(gradient_png())}, format="multipart"
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "mask"
    response = api.post(URL, {"image": upload(b"GIF89a nope")}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["param"] == "image"
