"""LoRA adapters through real processes (web, Redis broker, worker) with the official
openai client: upload with a manage key, use with ``extra_body={"loras": [...]}`` on a
generation and an edit, and a base request after it gives the base image bit for bit."""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
import pytest
import requests
from PIL import Image

from tests.adapters import demo_bytes
from tests.test_e2e import client, database_url, stack  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


@pytest.fixture(scope="module")
def adapter(stack):  # noqa: F811
    response = requests.post(
        f"{stack['base']}/v1/adapters",
        headers={"Authorization": f"Bearer {stack['keys']['alice_manage']}"},
        files={"file": ("ink.safetensors", demo_bytes("demo-sd"))},
        data={"base_model": "demo-sd", "name": "ink"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_openai_client_uses_an_adapter_and_nothing_leaks(client, adapter):  # noqa: F811
    def make(loras=None):
        extra = {"seed": 21, "num_inference_steps": 2}
        if loras is not None:
            extra["loras"] = loras
        result = client.images.generate(
            model="demo-sd", prompt="a harbour", size="64x64", extra_body=extra
        )
        return result

    base = make()
    styled = make([{"id": adapter, "scale": 0.9}])
    assert styled.model_extra["loras"][0]["id"] == adapter
    assert not np.array_equal(pixels(styled.data[0].b64_json), pixels(base.data[0].b64_json))
    zero = make([{"id": adapter, "scale": 0}])
    after = make()
    assert np.array_equal(pixels(zero.data[0].b64_json), pixels(base.data[0].b64_json))
    assert np.array_equal(pixels(after.data[0].b64_json), pixels(base.data[0].b64_json))


def test_the_openai_client_sends_loras_with_a_multipart_edit(client, adapter, tmp_path):  # noqa: F811
    path = tmp_path / "in.png"
    Image.new("RGB", (64, 64), (120, 30, 200)).save(path)
    with path.open("rb") as image:
        edited = client.images.edit(
            model="demo-sd",
            image=image,
            prompt="ink it",
            extra_body={"loras": [{"id": adapter, "scale": 1.2}], "seed": 4},
        )
    assert edited.model_extra["loras"] == [
        {"id": adapter, "name": "ink", "scale": 1.2, "price_per_image": 0}
    ]


def test_another_tenant_gets_a_404_naming_loras(stack, adapter):  # noqa: F811
    bob = openai.OpenAI(
        base_url=f"{stack['base']}/v1", api_key=stack["keys"]["bob"], max_retries=0, timeout=60
    )
    with pytest.raises(openai.NotFoundError) as raised:
        bob.images.generate(
            model="demo-sd", prompt="x", extra_body={"loras": [{"id": adapter, "scale": 1}]}
        )
    assert raised.value.body["param"] == "loras"
