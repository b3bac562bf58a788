"""The worker process's engine: one per process, built from settings on first use.

Imports torch (through the engine) when first called: workers only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from django.conf import settings

from generations.catalog import get_model
from generations.engine import ModelLoadError, RunRequest, RunResult
from generations.engine.batcher import batcher_for, run_batched
from generations.engine.pipelines import Engine
from generations.worker import probe

logger = logging.getLogger(__name__)

_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide engine: pipelines load once per worker process and are reused."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine(
                    settings.DEVICE,
                    memory_budget_mb=settings.MODEL_MEMORY_MB,
                    adapter_budget_mb=settings.ADAPTER_MEMORY_MB,
                )
    return _engine


class Place:
    """A claimed job's place in the device's room: taken before the claim, sized to the
    job's images once it is known, given back when the device starts on it (or the job
    ends)."""

    def __init__(self, room: DeviceRoom):
        self._room = room
        self.images = 1
        self.sized = False
        self.held = True

    def size(self, images: int) -> None:
        with self._room.changed:
            if self.held:
                self._room.waiting += images - self.images
                self.images = images
            if not self.sized:
                self.sized = True
                self._room.unsized -= 1
            self._room.changed.notify_all()

    def started(self) -> None:
        with self._room.changed:
            if not self.sized:
                self.sized = True
                self._room.unsized -= 1
            if self.held:
                self.held = False
                self._room.waiting -= self.images
            self._room.changed.notify_all()


class DeviceRoom:
    """The images this process claimed that its device has not started on yet.

    A worker thread claims a job only while fewer than one batch of images wait (one
    image without batching): the device runs one call and the next forms behind it, while
    every other job stays queued in the database, where fair share picks among all of them
    the moment a thread may claim again (generations/fairness.py). Greedy claims would bind
    the jobs of whoever queued first to this process's threads instead, and a newcomer
    would wait for all of them. One claim at a time is in flight (until its job's size is
    known), so the room is never overrun. The threads beyond the room encode, store and
    settle finished jobs while the device runs."""

    def __init__(self):
        self.changed = threading.Condition()
        self.waiting = 0
        self.unsized = 0

    def limit(self) -> int:
        return settings.BATCH_LOOKAHEAD_IMAGES if settings.BATCHING else 1

    def _has_room(self) -> bool:
        return self.unsized == 0 and self.waiting < self.limit()

    @contextlib.contextmanager
    def place(self, timeout: float):
        """Wait until there is room (at most `timeout` seconds, then take a place anyway,
        so a message is never held until the broker's time limit gives it up) and take a
        place for the block; it is given back when the device starts on the job or when
        the block ends (nothing claimed, a failure)."""
        with self.changed:
            if not self.changed.wait_for(self._has_room, timeout):
                logger.warning("no room on the device for %.0fs: claiming anyway", timeout)
            self.waiting += 1
            self.unsized += 1
        place = Place(self)
        try:
            yield place
        finally:
            place.started()


room = DeviceRoom()


def batcher():
    """The device's executor thread, following the BATCHING and BATCH_WAIT_MS settings."""
    found = batcher_for(get_engine(), batch_wait_ms=settings.BATCH_WAIT_MS)
    found.batch_wait_ms = settings.BATCH_WAIT_MS
    found.batching = settings.BATCHING
    return found


def run(request: RunRequest) -> RunResult:
    """One job's images, made in the device's one executor thread (generations/engine/
    batcher.py), batched with compatible jobs when batching is on. Every device call runs
    in that thread, with batching off too: torch's CPU thread pool belongs to the thread
    that calls it, and calls from several worker threads kept several pools competing for
    the cores (the pipeline ran slower inside the server than alone)."""
    return run_batched(batcher(), request)


def warm_up(model_ids: list[str]) -> None:
    """Import the heavy libraries, load the listed models and run each once (one step
    at its default size: kernels chosen, caches filled) before the first job, so the
    first request does not pay for any of it."""
    engine = get_engine()
    for model_id in model_ids:
        spec = get_model(model_id)
        if spec is None:
            logger.warning("warm-up: model %s is not in the catalog", model_id)
            continue
        started = time.perf_counter()
        try:
            engine.pipeline(spec)
            width, height = spec.default_size
            run(
                RunRequest(
                    spec=spec,
                    prompt="warm-up",
                    negative_prompt="",
                    width=width,
                    height=height,
                    steps=1,
                    guidance_scale=spec.default_guidance,
                    seeds=[0],
                )
            )
        except ModelLoadError as exc:
            logger.warning("warm-up: %s", exc)
            continue
        except Exception:  # noqa: BLE001 - a failed warm-up run must not stop the worker
            logger.warning("warm-up run of %s failed", model_id, exc_info=True)
            continue
        logger.info("warmed up %s in %.2fs: ready", model_id, time.perf_counter() - started)
        probe.report_warm(model_id)
