"""POST /v1/images/edits: image-to-image, inpainting, and the checks on uploads."""

from __future__ import annotations

import base64
import io
import os

import pytest
from imagefiles import alpha_mask, bomb_png, data_url, gradient_png, png_bytes, upload
from PIL import Image, ImageChops

from accounts.models import Organization

URL = "/v1/images/edits"


def edit(api, **fields):
    return api.post(URL, fields, format="multipart")


def decode(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))


def error_of(response) -> dict:
    assert response.status_code == 400, response.content
    return response.json()["error"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", ["demo-sd", "demo-flux"])
def test_image_to_image_keeps_the_input_size_and_counts_image_tokens(api, model):
    response = edit(
        api, image=upload(gradient_png((192, 128))), prompt="make it blue", model=model, seed=3
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["size"] == "192x128" and decode(body["data"][0]).size == (192, 128)
    per_side = 8 if model == "demo-sd" else 16
    tokens = (192 // per_side) * (128 // per_side)
    usage = body["usage"]
    assert usage["input_tokens_details"]["image_tokens"] == tokens
    assert usage["output_tokens"] == tokens
    assert usage["input_tokens"] == tokens + usage["input_tokens_details"]["text_tokens"]
    from generations.models import Generation

    generation = Generation.objects.get(pk=body["id"])
    assert generation.kind == "edit" and generation.params["strength"] == 0.75
    assert generation.inputs.get().file.name.endswith(".png")


@pytest.mark.django_db(transaction=True)
def test_strength_changes_the_picture_and_same_seed_repeats(api):
    def run(strength):
        return edit(
            api, image=upload(gradient_png()), prompt="x", seed=5, strength=strength,
            num_inference_steps=4,
        ).json()["data"][0]["b64_json"]  # fmt: skip

    assert run(0.5) == run(0.5)
    assert run(0.5) != run(1.0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", ["demo-sd", "demo-flux"])
def test_inpainting_repaints_only_the_transparent_area(api, model):
    source = gradient_png((256, 256))
    response = edit(
        api,
        image=upload(source),
        mask=upload(alpha_mask((256, 256), hole=(0, 0, 128, 128)), name="mask.png"),
        prompt="a hole",
        model=model,
        seed=1,
    )
    assert response.status_code == 200, response.content
    result = decode(response.json()["data"][0]).convert("RGB")
    original = Image.open(io.BytesIO(source)).convert("RGB")
    diff = ImageChops.difference(result, original)
    # Outside the box: exactly the input. Inside: repainted (random weights: noise).
    assert diff.crop((128, 0, 256, 256)).getbbox() is None
    assert diff.crop((0, 128, 128, 256)).getbbox() is None
    assert diff.crop((0, 0, 128, 128)).getbbox() is not None


@pytest.mark.django_db(transaction=True)
def test_mask_without_alpha_uses_luminance(api):
    source = gradient_png((128, 128))
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (64, 0, 128, 128))  # white = repaint the right half
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    response = edit(api, image=upload(source), mask=upload(buffer.getvalue()), prompt="p", seed=2)
    assert response.status_code == 200, response.content
    result = decode(response.json()["data"][0]).convert("RGB")
    diff = ImageChops.difference(result, Image.open(io.BytesIO(source)).convert("RGB"))
    assert diff.crop((0, 0, 64, 128)).getbbox() is None
    assert diff.crop((64, 0, 128, 128)).getbbox() is not None


@pytest.mark.django_db(transaction=True)
def test_json_body_with_data_urls(api):
    response = api.post(
        URL,
        {
            "prompt": "json",
            "images": [{"image_url": data_url(gradient_png((128, 128)))}],
            "mask": data_url(alpha_mask((128, 128), hole=(0, 0, 64, 64))),
            "size": "128x128",
            "seed": 4,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert decode(body["data"][0]).size == (128, 128)
    # The input image counts: 16x16 latent tokens.
    assert body["usage"]["input_tokens_details"]["image_tokens"] == 16 * 16


@pytest.mark.django_db(transaction=True)
def test_image_to_image_refuses_more_images_than_it_uses_before_holding_anything(api, tenant):
    balance = Organization.objects.get(pk=tenant.org.pk).credit_balance
    two = [upload(gradient_png((64, 64))), upload(png_bytes((128, 128)))]
    for body, kind in (
        ({"image[]": two, "prompt": "p"}, "multipart"),
        ({"images": [data_url(gradient_png((64, 64)))] * 2, "prompt": "p"}, "json"),
    ):
        response = api.post(URL, body, format=kind)
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["param"] == "image" and "got 2" in error["message"]
    mask = upload(alpha_mask((64, 64), hole=(0, 0, 32, 32)))
    inpaint = {
        "image[]": [upload(gradient_png((64, 64))) for _ in "ab"],
        "mask": mask,
        "prompt": "p",
    }
    assert api.post(URL, inpaint, format="multipart").json()["error"]["param"] == "image"
    variation = {"image[]": [upload(gradient_png((64, 64))), upload(gradient_png((64, 64)))]}
    response = api.post("/v1/images/variations", variation, format="multipart")
    assert response.json()["error"]["param"] == "image"
    assert Organization.objects.get(pk=tenant.org.pk).credit_balance == balance
    assert not tenant.org.generations.exists()
    assert api.get("/v1/models/demo-sd").json()["max_input_images"] == 1


@pytest.mark.django_db(transaction=True)
def test_size_snaps_down_to_the_model_multiple_and_limits(api):
    body = edit(api, image=upload(png_bytes((203, 150))), prompt="p", model="demo-flux").json()
    assert body["size"] == "192x144"
    body = edit(api, image=upload(png_bytes((2048, 1024))), prompt="p").json()
    assert body["size"] == "1024x512"
    body = edit(api, image=upload(png_bytes((300, 300))), prompt="p", size="128x128").json()
    assert body["size"] == "128x128"


@pytest.mark.django_db
def test_mask_of_another_size_is_a_400_on_mask(api):
    response = edit(
        api,
        image=upload(png_bytes((128, 128))),
        mask=upload(alpha_mask((64, 64))),
        prompt="p",
    )
    assert error_of(response)["param"] == "mask"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data",
    [
        b"this is not an image at all",  # a text file named .png
        b"",  # zero bytes
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,  # a PNG signature and garbage
        pytest.param(None, id="bomb"),
        pytest.param("huge", id="huge-dimensions"),
        pytest.param("gif", id="gif"),
    ],
)
def test_bad_uploads_are_400_on_image(api, data):
    if data is None:
        data = bomb_png()
    elif data == "huge":
        data = png_bytes((8000, 16), mode="L", color=0)
    elif data == "gif":
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format="GIF")
        data = buffer.getvalue()
    response = edit(api, image=upload(data), prompt="p")
    error = error_of(response)
    assert error["param"] == "image", error


@pytest.mark.django_db
def test_missing_image_oversized_file_and_bad_data_url(api, settings):
    assert error_of(edit(api, prompt="p"))["param"] == "image"
    settings.MAX_IMAGE_BYTES = 2048
    noise = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    response = edit(api, image=upload(buffer.getvalue()), prompt="p")
    assert error_of(response)["param"] == "image" and "2048" in error_of(response)["message"]
    settings.MAX_IMAGE_BYTES = 20 * 1024 * 1024
    response = api.post(URL, {"prompt": "p", "image": "https://example.com/x.png"}, format="json")
    assert error_of(response)["param"] == "image"
    response = api.post(URL, {"prompt": "p", "image": "data:image/png;base64,@@@"}, format="json")
    assert error_of(response)["param"] == "image"


@pytest.mark.django_db
def test_bad_strength_and_unknown_fields(api):
    image = upload(png_bytes((64, 64)))
    assert error_of(edit(api, image=image, prompt="p", strength=1.5))["param"] == "strength"
    image = upload(png_bytes((64, 64)))
    response = edit(api, image=image, prompt="p", strength=0.1, num_inference_steps=2)
    assert error_of(response)["param"] == "strength"
    image = upload(png_bytes((64, 64)))
    assert error_of(edit(api, image=image, prompt="p", colour="red"))["param"] == "colour"
    assert error_of(edit(api, image=upload(png_bytes()), prompt=""))["param"] == "prompt"
