"""The pipeline cache: models stay loaded while they fit the memory budget; the least
recently used one leaves first, with the pipelines derived from it."""

from __future__ import annotations

import gc
import weakref

import pytest

from generations.catalog import get_model
from generations.engine import RunRequest
from generations.engine.cache import MB, pipeline_bytes
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
def sizes() -> dict[str, int]:
    engine = Engine("cpu", memory_budget_mb=100_000)
    measured = {
        model_id: pipeline_bytes(engine.pipeline(get_model(model_id))) for model_id in MODELS
    }
    assert all(size > MB for size in measured.values())
    return measured


def engine_with_budget(budget_bytes: int) -> Engine:
    engine = Engine("cpu", memory_budget_mb=1)
    engine.cache.budget_bytes = budget_bytes
    return engine


def test_switching_between_two_models_that_fit_never_reloads(sizes):
    engine = engine_with_budget(sum(sizes.values()))
    for _ in range(3):
        for model_id in MODELS:
            generate(engine, model_id)
    assert dict(engine.loads) == {"demo-sd": 1, "demo-flux": 1}
    assert sorted(engine.loaded_models()) == sorted(MODELS)


def test_with_room_for_one_the_least_recently_used_leaves(sizes):
    engine = engine_with_budget(max(sizes.values()))
    for _ in range(3):
        for model_id in MODELS:
            generate(engine, model_id)
    assert dict(engine.loads) == {"demo-sd": 3, "demo-flux": 3}
    assert engine.loaded_models() == ["demo-flux"]
    # Counting a prompt's tokens never brings an evicted model back.
    assert engine.text_tokens(get_model("demo-sd"), ["a prompt"]) > 0
    assert engine.loaded_models() == ["demo-flux"] and engine.loads["demo-sd"] == 3


def test_three_models_evict_the_least_recently_used(sizes, settings, tmp_path):
    """Room for two: using sd, flux, sd, then a third model evicts flux (not sd)."""
    import json

    from generations.catalog import catalog

    sd = get_model("demo-sd")
    (tmp_path / "catalog.json").write_text(
        json.dumps([{"id": "demo-sd-copy", "source": sd.source, "architecture": "sd"}])
    )
    settings.MODEL_CATALOG_FILE = str(tmp_path / "catalog.json")
    catalog.cache_clear()
    try:
        engine = engine_with_budget(sizes["demo-sd"] * 2 + sizes["demo-flux"] - 1)
        for model_id in ("demo-sd", "demo-flux", "demo-sd", "demo-sd-copy"):
            generate(engine, model_id)
        assert sorted(engine.loaded_models()) == ["demo-sd", "demo-sd-copy"]
        assert engine.loads["demo-sd"] == 1
    finally:
        catalog.cache_clear()


def test_derived_pipelines_leave_with_their_model(sizes):
    engine = engine_with_budget(max(sizes.values()))
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
