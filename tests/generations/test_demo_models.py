"""The demo pipelines load and run through diffusers' normal path (no database needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, FluxPipeline, StableDiffusionPipeline

from generations.engine.demo_models import DEMO_BUILDERS, build_sd_demo, is_built

PROMPT = "a photo of an astronaut riding a horse on the moon"
EXPECTED_CLASS = {"demo-sd": StableDiffusionPipeline, "demo-flux": FluxPipeline}
# FLUX.1-schnell style calls: no CFG, short T5 sequence.
CALL_KWARGS = {"demo-sd": {}, "demo-flux": {"guidance_scale": 0.0, "max_sequence_length": 64}}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo-models")
    for name, build in DEMO_BUILDERS.items():
        build(root / name)
    return root


@pytest.fixture(scope="module")
def pipes(built) -> dict[str, DiffusionPipeline]:
    loaded = {name: DiffusionPipeline.from_pretrained(built / name) for name in DEMO_BUILDERS}
    for pipe in loaded.values():
        pipe.set_progress_bar_config(disable=True)
    return loaded


def _generate(pipe, name: str, seed: int, **kwargs):
    kwargs = {"height": 64, "width": 64, "num_inference_steps": 2, "output_type": "np", **kwargs}
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, generator=generator, **CALL_KWARGS[name], **kwargs).images


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def test_is_built(built, tmp_path):
    assert all(is_built(built / name) for name in DEMO_BUILDERS)
    assert not is_built(tmp_path / "missing")
    # A folder whose weights never got written is not a usable model.
    partial = tmp_path / "partial"
    build_sd_demo(partial)
    (partial / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    assert not is_built(partial)


@pytest.mark.parametrize("name", list(DEMO_BUILDERS))
def test_loads_as_real_architecture(pipes, name):
    pipe = pipes[name]
    assert type(pipe) is EXPECTED_CLASS[name]
    assert pipe.vae_scale_factor == 8


@pytest.mark.parametrize("name", list(DEMO_BUILDERS))
def test_image_size_as_requested(pipes, name):
    (image,) = _generate(pipes[name], name, seed=0, height=96, width=128, output_type="pil")
    assert image.size == (128, 96)


@pytest.mark.parametrize("name", list(DEMO_BUILDERS))
def test_seeded_generation_is_deterministic(pipes, name):
    first = _generate(pipes[name], name, seed=42)
    again = _generate(pipes[name], name, seed=42)
    other = _generate(pipes[name], name, seed=43)
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_prompts_tokenize_like_words(pipes):
    words = len(PROMPT.split())
    flux = pipes["demo-flux"]
    # CLIP adds start/end tokens, T5 adds </s>; every word of this prompt is one token.
    assert len(flux.tokenizer(PROMPT).input_ids) == words + 2
    assert len(flux.tokenizer_2(PROMPT).input_ids) == words + 1
    for tokenizer in (flux.tokenizer, flux.tokenizer_2):
        assert tokenizer("Ünïcödé 日本語 🐱 x\x00").input_ids  # no crash on arbitrary text


def test_build_is_reproducible(built, tmp_path):
    for name, build in DEMO_BUILDERS.items():
        build(tmp_path / name)
        assert _digest(tmp_path / name) == _digest(built / name)
    build_sd_demo(tmp_path / "seed-1", seed=1)
    reseeded = _digest(tmp_path / "seed-1")
    assert (
        reseeded["unet/diffusion_pytorch_model.safetensors"]
        != _digest(built / "demo-sd")["unet/diffusion_pytorch_model.safetensors"]
    )
