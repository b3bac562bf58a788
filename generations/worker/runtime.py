"""The worker process's engine: one per process, built from settings on first use.

Imports torch (through the engine) when first called: workers only.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from generations.catalog import get_model
from generations.engine import ModelLoadError, RunRequest, RunResult
from generations.engine.batcher import batcher_for, run_batched
from generations.engine.pipelines import Engine

logger = logging.getLogger("generations.worker")

_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine: pipelines load once per worker process and are reused."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine(settings.DEVICE, memory_budget_mb=settings.MODEL_MEMORY_MB)
    return _engine


def batcher():
    """The device's batcher, following the BATCH_WAIT_MS setting."""
    found = batcher_for(get_engine(), batch_wait_ms=settings.BATCH_WAIT_MS)
    found.batch_wait_ms = settings.BATCH_WAIT_MS
    return found


def run(request: RunRequest) -> RunResult:
    """One job's images: through the device's batcher when batching is on and the job is
    plain text-to-image; directly (under the same device lock) otherwise."""
    if settings.BATCHING and request.init_image is None and not request.partial_images:
        return run_batched(batcher(), request)
    return get_engine().run(request)


def warm_up(model_ids: list[str]) -> None:
    """Import the heavy libraries and load the listed models before the first job."""
    engine = get_engine()
    for model_id in model_ids:
        spec = get_model(model_id)
        if spec is None:
            logger.warning("warm-up: model %s is not in the catalog", model_id)
            continue
        try:
            engine.pipeline(spec)
        except ModelLoadError as exc:
            logger.warning("warm-up: %s", exc)
