"""The pipeline cache: models stay loaded while they fit the memory budget; the least
recently used one leaves first, with the pipelines derived from it."""

from __future__ import annotations

import gc
import weakref

import pytest

from generations.catalog import get_model
from generations.engine import RunRequest
from generations.engine.cache import MB, activation_bytes, largest_call, pipeline_bytes
from generations.engine.pipelines import Engine

MODELS = ("demo-sd", "demo-flux")


def generate(engine: Engine, model_id: str) -> None:
    engine.run(
        RunRequest(
            spec=get_model(model_id),
            prompt="cache",
            negative_prompt="",
            width=64,
            height=64,
            steps=1,
            guidance_scale=1.0,
            seeds=[1],
        )
    )


@pytest.fixture(scope="module")
def measured() -> dict[str, tuple[int, int]]:
    """(weights, activation headroom) of each demo model."""
    engine = Engine("cpu", memory_budget_mb=100_000)
    found = {}
    for model_id in MODELS:
        spec = get_model(model_id)
        pipe = engine.pipeline(spec)
        found[model_id] = (pipeline_bytes(pipe), activation_bytes(spec, pipe))
    assert all(weights > MB for weights, _ in found.values())
    return found


@pytest.fixture(scope="module")
def sizes(measured) -> dict[str, int]:
    return {model_id: weights for model_id, (weights, _) in measured.items()}


@pytest.fixture(scope="module")
def headroom(measured) -> int:
    """The largest activation headroom: one call at a time needs only the largest."""
    return max(room for _, room in measured.values())


def engine_with_budget(budget_bytes: int) -> Engine:
    engine = Engine("cpu", memory_budget_mb=1)
    engine.cache.budget_bytes = budget_bytes
    return engine


def test_switching_between_two_models_that_fit_never_reloads(sizes, headroom):
    engine = engine_with_budget(sum(sizes.values()) + headroom)
    for _ in range(3):
        for model_id in MODELS:
            generate(engine, model_id)
    assert dict(engine.loads) == {"demo-sd": 1, "demo-flux": 1}
    assert sorted(engine.loaded_models()) == sorted(MODELS)


def test_with_room_for_one_the_least_recently_used_leaves(measured):
    engine = engine_with_budget(max(weights + room for weights, room in measured.values()))
    for _ in range(3):
        for model_id in MODELS:
            generate(engine, model_id)
    assert dict(engine.loads) == {"demo-sd": 3, "demo-flux": 3}
    assert engine.loaded_models() == ["demo-flux"]
    # Counting a prompt's tokens never brings an evicted model back.
    assert engine.text_tokens(get_model("demo-sd"), ["a prompt"]) > 0
    assert engine.loaded_models() == ["demo-flux"] and engine.loads["demo-sd"] == 3


def test_three_models_evict_the_least_recently_used(sizes, headroom, settings, tmp_path):
    """Room for two: using sd, flux, sd, then a third model evicts flux (not sd)."""
    import json
    import shutil

    from generations.catalog import catalog

    copy = shutil.copytree(get_model("demo-sd").source, tmp_path / "sd-copy")
    (tmp_path / "catalog.json").write_text(
        json.dumps([{"id": "demo-sd-copy", "source": str(copy), "architecture": "sd"}])
    )
    settings.MODEL_CATALOG_FILE = str(tmp_path / "catalog.json")
    catalog.cache_clear()
    try:
        engine = engine_with_budget(sizes["demo-sd"] * 2 + sizes["demo-flux"] + headroom - 1)
        for model_id in ("demo-sd", "demo-flux", "demo-sd", "demo-sd-copy"):
            generate(engine, model_id)
        assert sorted(engine.loaded_models()) == ["demo-sd", "demo-sd-copy"]
        assert engine.loads["demo-sd"] == 1
    finally:
        catalog.cache_clear()


def test_derived_pipelines_leave_with_their_model(measured):
    engine = engine_with_budget(max(weights + room for weights, room in measured.values()))
    img2img = weakref.ref(engine.derived(get_model("demo-sd"), "img2img"))
    base = weakref.ref(engine.pipeline(get_model("demo-sd")))
    generate(engine, "demo-flux")
    gc.collect()
    assert img2img() is None and base() is None
    assert engine.loaded_models() == ["demo-flux"]


def test_budget_setting(settings, monkeypatch):
    from generations.worker import runtime

    monkeypatch.setattr(runtime, "_engine", None)  # the worker builds its engine anew
    settings.MODEL_MEMORY_MB = 64
    assert runtime.get_engine().cache.budget_bytes == 64 * MB
    assert Engine("cpu", memory_budget_mb=0).cache.budget_bytes > 64 * MB  # 80% of the RAM


def test_warm_up_loads_and_runs_each_model_once(monkeypatch, caplog):
    """The first request after start-up pays for nothing: the worker loaded the model and
    ran it once (one step) before taking jobs; an unknown id is only a warning."""
    from generations.worker import runtime

    engine = Engine("cpu", memory_budget_mb=100_000)
    monkeypatch.setattr(runtime, "_engine", engine)
    runs = []
    real_run = Engine.run
    monkeypatch.setattr(
        Engine, "run", lambda self, request: runs.append(request) or real_run(self, request)
    )
    with caplog.at_level("INFO", logger="generations.worker"):
        runtime.warm_up(["demo-sd", "no-such-model"])
    assert engine.loaded_models() == ["demo-sd"]
    assert [(r.spec.id, r.steps) for r in runs] == [("demo-sd", 1)]
    assert "warmed up demo-sd" in caplog.text and "no-such-model" in caplog.text


def test_one_model_is_never_loaded_twice(caplog):
    """Two catalog entries with the same weights and load settings share one pipeline;
    an entry with other settings evicts the loaded copy before loading its own; the
    image-to-image pipeline shares the base model's modules."""
    import dataclasses

    sd = get_model("demo-sd")
    alias = dataclasses.replace(sd, id="demo-sd-alias", description="the same weights")
    other = dataclasses.replace(sd, id="demo-sd-dpm", scheduler="DPMSolverMultistepScheduler")
    engine = Engine("cpu", memory_budget_mb=100_000)
    assert engine.pipeline(alias) is engine.pipeline(sd)
    assert engine.loaded_models() == ["demo-sd-alias", "demo-sd"]
    assert dict(engine.loads) == {"demo-sd-alias": 1}
    img2img = engine.derived(sd, "img2img")
    assert img2img.unet is engine.pipeline(sd).unet and img2img.vae is engine.pipeline(sd).vae
    with caplog.at_level("WARNING", logger="generations.engine"):
        engine.pipeline(other)
    assert engine.loaded_models() == ["demo-sd-dpm"]
    assert "uses the weights of loaded model demo-sd-alias, demo-sd" in caplog.text


def test_activation_headroom_scales_with_the_largest_call():
    """The estimate: the most images one call can carry at the largest size, through the
    VAE decoder and the denoiser (doubled by classifier-free guidance)."""
    import dataclasses

    engine = Engine("cpu", memory_budget_mb=100_000)
    sd = get_model("demo-sd")
    pipe = engine.pipeline(sd)
    assert largest_call(sd) == (10, 1024 * 1024)  # max_n images at max_pixels
    smaller = dataclasses.replace(sd, max_n=1)
    assert largest_call(smaller) == (8, 512 * 512)  # then a full batch at 512x512 is larger
    full, half = activation_bytes(sd, pipe), activation_bytes(smaller, pipe)
    assert full == pytest.approx(half * (10 * 1024 * 1024) / (8 * 512 * 512), rel=0.01)
    # 8 live fp32 tensors of 1024x1024 x the VAE's first 8 channels per image, at least.
    assert full >= 10 * 1024 * 1024 * 8 * 4 * 8


def test_the_load_log_line_gives_seconds_bytes_and_device(caplog):
    engine = Engine("cpu", memory_budget_mb=100_000)
    with caplog.at_level("INFO", logger="generations.engine"):
        pipe = engine.pipeline(get_model("demo-flux"))
    line = next(r.getMessage() for r in caplog.records if "loaded model demo-flux" in r.message)
    weights_mb = pipeline_bytes(pipe) / MB
    assert "(FluxPipeline) on cpu in " in line
    assert f"{weights_mb:.0f} MB weights" in line and "MB activation headroom" in line
