"""The API's JSON renderer gives DRF's body byte for byte, base64 images spliced in."""

from __future__ import annotations

import json
import os

import pytest
from rest_framework.renderers import JSONRenderer as DRFRenderer

from imagehub.renderers import Base64Text, JSONRenderer, dumps_with_images


def _payload(*images: bytes, prompt: str = "a lighthouse") -> dict:
    return {
        "id": "gen_1",
        "status": "succeeded",
        "data": [
            {"b64_json": Base64Text.of(data), "revised_prompt": prompt, "seed": i}
            for i, data in enumerate(images)
        ],
        "usage": {"total_tokens": 3},
    }


@pytest.mark.parametrize(
    "prompt",
    [
        "a lighthouse",
        # Text a client controls, with what JSON escapes and what DRF replaces, and a
        # marker-like string that must stay text.
        'quote " backslash \\ line\u2028sep é 漢字 imagehub-0000000000000000-0',
    ],
)
def test_same_body_as_drf_with_images_spliced(prompt):
    images = [os.urandom(200_000), os.urandom(10), os.urandom(150_001)]
    payload = _payload(*images, prompt=prompt)
    body = JSONRenderer().render(payload)
    assert body == DRFRenderer().render(payload)
    parsed = json.loads(body)
    assert [item["revised_prompt"] for item in parsed["data"]] == [prompt] * 3
    assert parsed["data"][0]["b64_json"] == str(payload["data"][0]["b64_json"])


def test_other_bodies_render_as_drf_does():
    for data in (
        {"object": "list", "data": [{"id": "a"}, "text", 3]},
        {"error": {"message": "bad", "param": "size"}},
        [1, 2, 3],
        {"data": "not a list"},
        None,
    ):
        assert JSONRenderer().render(data) == DRFRenderer().render(data)


def test_indent_and_plain_base64_text():
    payload = _payload(os.urandom(100_000))
    payload["data"].append({"b64_json": Base64Text("QUJD" * 20_000)})  # no bytes kept
    context = {"indent": 2}
    assert JSONRenderer().render(payload, "application/json; indent=2", context) == (
        DRFRenderer().render(payload, "application/json; indent=2", context)
    )


def test_server_sent_event_bodies_match_json_dumps():
    def dumps(payload):
        return json.dumps(payload, separators=(",", ":"))

    for b64 in (Base64Text.of(os.urandom(120_000)), Base64Text.of(b"small"), "plain text"):
        payload = {
            "type": "image_generation.completed",
            "b64_json": b64,
            "size": "1024x1024",
            "prompt": "é \u2028 imagehub-0000000000000000-0",
        }
        assert dumps_with_images(payload, dumps) == dumps(payload).encode()
