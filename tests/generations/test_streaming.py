"""`stream: true`: server-sent events with partial images, then one completed event per
image, in the shapes of the openai SDK's ImageGenStreamEvent / ImageEditStreamEvent."""

from __future__ import annotations

import base64
import io
import json

import pytest
from imagefiles import gradient_png, upload
from openai.types import ImageEditStreamEvent, ImageGenStreamEvent
from PIL import Image
from pydantic import TypeAdapter

pytestmark = pytest.mark.django_db(transaction=True)


def events(response) -> list[tuple[str, dict]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    text = b"".join(response.streaming_content).decode()
    parsed = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


def test_generation_streams_partials_then_completed(api):
    response = api.post(
        "/v1/images/generations",
        {"prompt": "stream", "stream": True, "partial_images": 2, "seed": 1, "size": "128x128"},
        format="json",
    )
    received = events(response)
    names = [name for name, _ in received]
    assert names == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    adapter = TypeAdapter(ImageGenStreamEvent)
    for name, data in received:
        event = adapter.validate_python(data)
        assert event.type == name and event.size == "128x128" and event.output_format == "png"
        assert Image.open(io.BytesIO(base64.b64decode(event.b64_json))).size == (128, 128)
    assert [data["partial_image_index"] for _, data in received[:2]] == [0, 1]
    usage = received[-1][1]["usage"]
    assert usage["output_tokens"] == 16 * 16 and usage["total_tokens"] > usage["output_tokens"]
    # The streamed image is the image a plain request with the same seed returns.
    plain = api.post(
        "/v1/images/generations", {"prompt": "stream", "seed": 1, "size": "128x128"}, format="json"
    ).json()
    assert plain["data"][0]["b64_json"] == received[-1][1]["b64_json"]


def test_stream_n2_sends_one_completed_per_image_and_no_partials_by_default(api):
    response = api.post(
        "/v1/images/generations",
        {"prompt": "two", "stream": True, "n": 2, "model": "demo-flux", "size": "128x128"},
        format="json",
    )
    received = events(response)
    assert [name for name, _ in received] == ["image_generation.completed"] * 2
    assert received[0][1]["b64_json"] != received[1][1]["b64_json"]


def test_edit_streams_image_edit_events(api):
    response = api.post(
        "/v1/images/edits",
        {"image": upload(gradient_png((128, 128))), "prompt": "e", "stream": "true",
         "partial_images": 1, "model": "demo-flux"},
        format="multipart",
    )  # fmt: skip
    received = events(response)
    assert [name for name, _ in received] == ["image_edit.partial_image", "image_edit.completed"]
    adapter = TypeAdapter(ImageEditStreamEvent)
    for _, data in received:
        adapter.validate_python(data)


def test_failure_after_the_stream_began_is_an_error_event(api, monkeypatch):
    from generations.engine.pipelines import Engine

    def broken(self, *args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(Engine, "run", broken)
    response = api.post("/v1/images/generations", {"prompt": "x", "stream": True}, format="json")
    [(name, data)] = events(response)
    assert name == "error" and data["error"]["code"] == "engine_error"
    assert "kaboom" in data["error"]["message"]
