"""Helpers of the adapter tests: the demo adapters' files, hand-made safetensors files,
and uploads through the API."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from django.conf import settings
from safetensors.numpy import save as save_tensors

from generations.engine.demo_adapters import DEMO_ADAPTERS

URL = "/v1/adapters"


def demo_file(model: str = "demo-sd") -> Path:
    """The demo adapter's file for `model` (built by the session's build_demo_models)."""
    return Path(settings.DEMO_MODELS_DIR) / "adapters" / DEMO_ADAPTERS[model][2]


def demo_bytes(model: str = "demo-sd") -> bytes:
    return demo_file(model).read_bytes()


def tensors_file(tensors: dict[str, tuple[int, ...]], seed: int = 0) -> bytes:
    """A safetensors file of random float32 tensors of the given shapes."""
    rng = np.random.default_rng(seed)
    return save_tensors(
        {name: rng.standard_normal(shape).astype(np.float32) for name, shape in tensors.items()}
    )


def upload(client, data: bytes, *, base_model: str = "demo-sd", name: str = "style", **extra):
    handle = io.BytesIO(data)
    handle.name = f"{name}.safetensors"
    return client.post(
        URL, {"file": handle, "base_model": base_model, "name": name, **extra}, format="multipart"
    )
