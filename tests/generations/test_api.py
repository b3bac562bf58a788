"""The Images API as a client sees it, on the embedded default (in-process worker)."""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image, ImageChops

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


def generate(api, **body):
    return api.post(URL, body, format="json")


def decode(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))


def nearly_equal(a: dict, b: dict, tolerance: int = 2) -> bool:
    """Same picture up to float rounding: a batched matmul may differ from a single one
    by a unit in the last place, which can flip a pixel value by one."""
    pa, pb = decode(a).convert("RGB"), decode(b).convert("RGB")
    if pa.size != pb.size:
        return False
    diff = ImageChops.difference(pa, pb).getextrema()
    return max(high for _, high in diff) <= tolerance


def test_generates_pngs_of_requested_size_with_usage(api):
    response = generate(api, prompt="a lighthouse at dusk", size="256x192", n=2, seed=7)
    assert response.status_code == 200, response.content
    body = response.json()
    assert response["x-request-id"].startswith("req_")
    assert body["id"].startswith("gen_") and body["status"] == "succeeded"
    assert isinstance(body["created"], int)
    assert body["size"] == "256x192" and body["output_format"] == "png"
    assert len(body["data"]) == 2
    for item in body["data"]:
        image = decode(item)
        assert image.format == "PNG" and image.size == (256, 192)
        assert item["revised_prompt"] == "a lighthouse at dusk"
    assert [item["seed"] for item in body["data"]] == [7, 8]
    usage = body["usage"]
    # SD-style VAE downsamples by 8: (256/8) * (192/8) latent tokens per image.
    assert usage["output_tokens"] == 2 * 32 * 24
    assert usage["input_tokens_details"]["text_tokens"] > 0
    assert usage["input_tokens_details"]["image_tokens"] == 0
    assert usage["input_tokens"] == usage["input_tokens_details"]["text_tokens"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    timings = body["timings"]
    assert timings["inference"] > 0 and timings["total"] >= timings["inference"]
    assert timings["queue"] >= 0


def test_prompt_tokens_grow_with_the_prompt(api):
    short = generate(api, prompt="a cat", seed=1).json()["usage"]["input_tokens"]
    long = generate(api, prompt="a cat " * 20, seed=1).json()["usage"]["input_tokens"]
    assert long > short


def test_same_seed_same_image_and_seeds_are_per_image(api):
    first = generate(api, prompt="seeded", seed=1234, n=2).json()["data"]
    again = generate(api, prompt="seeded", seed=1234, n=2).json()["data"]
    assert first[0]["b64_json"] == again[0]["b64_json"]
    assert first[1]["b64_json"] == again[1]["b64_json"]
    assert first[0]["b64_json"] != first[1]["b64_json"]
    # The second image of seed S is the first image of seed S+1.
    alone = generate(api, prompt="seeded", seed=1235).json()["data"]
    assert nearly_equal(alone[0], first[1])
    other = generate(api, prompt="seeded", seed=99).json()["data"]
    assert not nearly_equal(other[0], first[0])


def test_flux_architecture_and_default_model(api):
    body = generate(api, prompt="flux", model="demo-flux", size="256x256", seed=3).json()
    assert body["model"] == "demo-flux"
    assert decode(body["data"][0]).size == (256, 256)
    # FLUX packs 2x2 latents (VAE factor 8) into one token: (256/16)^2.
    assert body["usage"]["output_tokens"] == 256
    assert generate(api, prompt="default").json()["model"] == "demo-sd"


@pytest.mark.parametrize(
    ("output_format", "pil_format"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")]
)
def test_output_formats(api, output_format, pil_format):
    body = generate(
        api, prompt="formats", output_format=output_format, output_compression=50, seed=5
    ).json()
    assert body["output_format"] == output_format
    assert decode(body["data"][0]).format == pil_format


def test_quality_and_steps(api):
    low = generate(api, prompt="q", quality="low").json()
    high = generate(api, prompt="q", quality="hd").json()
    explicit = generate(api, prompt="q", num_steps=3).json()
    assert (low["steps"], high["steps"], explicit["steps"]) == (2, 8, 3)
    assert high["quality"] == "hd"


def test_width_height_extension(api):
    body = generate(api, prompt="wh", width=128, height=64).json()
    assert body["size"] == "128x64"
    assert decode(body["data"][0]).size == (128, 64)


def test_url_response_is_a_signed_expiring_link(api, client, settings):
    body = generate(api, prompt="link", response_format="url").json()
    url = body["data"][0]["url"]
    assert "b64_json" not in body["data"][0]
    assert "signature=" in url and "expires=" in url
    path = url.split("testserver", 1)[1]
    fetched = client.get(path)
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(b"".join(fetched.streaming_content))).size == (256, 256)
    tampered = client.get(path.replace("signature=", "signature=0"))
    assert tampered.status_code == 403
    assert tampered.json()["error"]["code"] == "invalid_signature"
    # A correctly signed link whose hour has passed no longer works.
    from generations.signed_urls import _signature

    name = path.split("/v1/files/", 1)[1].split("?")[0]
    past = int(time.time()) - 1
    expired = client.get(f"/v1/files/{name}?expires={past}&signature={_signature(name, past)}")
    assert expired.status_code == 403


def test_async_returns_202_then_polls_to_the_result(api, other_tenant):
    response = api.post(
        URL, {"prompt": "later", "seed": 11}, format="json", HTTP_PREFER="respond-async"
    )
    assert response.status_code == 202
    assert response["Preference-Applied"] == "respond-async"
    generation = response.json()
    assert generation["status"] in ("queued", "running", "succeeded")
    assert "data" not in generation or generation["status"] == "succeeded"
    deadline = time.monotonic() + 60
    while True:
        polled = api.get(f"{URL}/{generation['id']}").json()
        if polled["status"] == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert polled["status"] == "succeeded"
    assert decode(polled["data"][0]).size == (256, 256)
    # Another tenant cannot see it, and cannot tell that it exists.
    foreign = other_tenant.client().get(f"{URL}/{generation['id']}")
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "generation_not_found"
    assert api.get(f"{URL}/gen_doesnotexist").status_code == 404


def test_other_paths_reach_the_same_endpoint(api):
    for path in ("/api/images/generations", "/v1/images/generation"):
        response = api.post(path, {"prompt": "alias"}, format="json")
        assert response.status_code == 200, path


def test_wait_timeout_gives_504_and_work_goes_on(api, monkeypatch):
    from generations.engine.pipelines import Engine

    real_run = Engine.run

    def slow_run(self, *args, **kwargs):
        time.sleep(1.5)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "run", slow_run)
    response = api.post(URL, {"prompt": "slow"}, format="json", HTTP_PREFER="wait=1")
    assert response.status_code == 504
    error = response.json()["error"]
    generation_id = error["generation_id"]
    assert generation_id in error["message"] and response["x-generation-id"] == generation_id
    deadline = time.monotonic() + 30
    while api.get(f"{URL}/{generation_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_engine_failure_is_reported_not_hidden(api, monkeypatch):
    from generations.engine.pipelines import Engine

    def broken(self, *args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(Engine, "run", broken)
    response = generate(api, prompt="boom")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "engine_error" and "kaboom" in error["message"]
    # ... and the worker is still alive for the next job.
    monkeypatch.undo()
    assert generate(api, prompt="after").status_code == 200
