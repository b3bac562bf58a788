"""What a worker does with one generation id: claim, run, store, complete (the worker
process's side of a job; the actor in generations/worker/actors.py calls it).

Safe to run again for the same id: a finished job is skipped, a job whose images were
partly stored generates only the missing ones, and completion is a conditional update.
"""

from __future__ import annotations

import contextlib
import logging
import time

from dramatiq.middleware.time_limit import TimeLimitExceeded

from generations import previews, services
from generations.catalog import get_model
from generations.engine import Canceled, ModelLoadError, OutOfMemory, RunRequest
from generations.engine.cache import UnsupportedTask
from generations.formats import EXTENSIONS, encode_image
from generations.inputs import load_inputs, load_references
from generations.models import Generation
from generations.worker import probe, runtime
from generations.worker.liveness import WORKER_NAME, heartbeat
from imagehub import metrics
from imagehub.db import is_connection_error, retry_once

logger = logging.getLogger(__name__)


def run_generation(*, generation_id: str) -> None:
    """Run the job a message names, or the one fair share picks in its stead."""
    claimed = services.generation_claim(generation_id=generation_id, worker=WORKER_NAME)
    if claimed is None:
        logger.info("skipped %s: nothing queued, or it runs on a live worker", generation_id)
        metrics.REDELIVERED.inc()
        return
    with heartbeat.running(claimed):
        _run_claimed(claimed)


def _run_claimed(generation_id: str) -> None:
    generation = Generation.objects.get(pk=generation_id)
    logger.info(
        "running %s attempt=%d model=%s n=%d size=%s steps=%d worker=%s",
        generation.id,
        generation.attempts,
        generation.model,
        generation.n,
        generation.size,
        generation.steps,
        WORKER_NAME,
    )
    if generation.started_at:
        metrics.QUEUE_WAIT.labels(generation.model).observe(
            max(0.0, (generation.started_at - generation.created_at).total_seconds())
        )
    started = time.perf_counter()
    try:
        with _arriving():
            _run(generation)
    except Canceled:
        logger.info("canceled %s while running", generation.id)
        services.generation_mark_canceled(generation_id=generation.id)
        metrics.JOBS.labels(generation.model, "canceled", "canceled").inc()
    except ModelLoadError as exc:
        if not isinstance(exc, UnsupportedTask):
            probe.report_failed(generation.model, str(exc))
        _fail(generation, "model_unavailable", str(exc))
    except OutOfMemory as exc:
        _fail(generation, "out_of_memory", f"The device ran out of memory: {exc}")
    except TimeLimitExceeded:
        _fail(generation, "timeout", "The generation ran past the time limit and was stopped.")
    except Exception as exc:  # noqa: BLE001 - one job's failure must never kill the worker
        if is_connection_error(exc):
            # Not the job's fault: leave it running; its heartbeat stops with this call,
            # and the recovery loop hands it to a worker that can reach the database.
            logger.warning("database lost while running %s: %s", generation.id, exc)
            raise
        logger.exception("generation %s crashed", generation.id)
        _fail(generation, "engine_error", f"The engine failed: {type(exc).__name__}: {exc}")
    else:
        logger.info("succeeded %s in %.3fs", generation.id, time.perf_counter() - started)
        probe.report_loaded(generation.model)
        metrics.JOBS.labels(generation.model, "succeeded", "").inc()
        metrics.IMAGES.labels(generation.model).inc(generation.n)


def _run(generation: Generation) -> None:
    spec = get_model(generation.model)
    if spec is None:
        raise ModelLoadError(f"Model '{generation.model}' is no longer in the catalog.")
    engine = runtime.get_engine()
    stored = set(generation.images.values_list("index", flat=True))
    missing = [i for i in range(generation.n) if i not in stored]
    inference_seconds = generation.inference_seconds
    device_wait_seconds = generation.device_wait_seconds
    if missing:
        result = runtime.run(
            RunRequest(
                spec=spec,
                prompt=generation.prompt,
                negative_prompt=generation.negative_prompt,
                width=generation.width,
                height=generation.height,
                steps=generation.steps,
                guidance_scale=generation.guidance_scale,
                seeds=[generation.seed + i for i in missing],
                should_stop=_cancel_check(generation.id),
                **_task_inputs(generation),
            )
        )
        inference_seconds = result.inference_seconds
        device_wait_seconds = result.device_wait_seconds
        # The whole pipeline call's seconds, shared with the jobs batched with this one.
        metrics.INFERENCE.labels(spec.id).observe(inference_seconds)
        metrics.sample_device_memory(engine.device)
        for index, image in zip(missing, result.images, strict=True):
            data, content_type = encode_image(
                image, generation.output_format, generation.output_compression
            )
            services.generation_save_image(
                generation=generation,
                index=index,
                seed=generation.seed + index,
                data=data,
                content_type=content_type,
                extension=EXTENSIONS[generation.output_format],
                width=image.width,
                height=image.height,
            )
    text_tokens = engine.text_tokens(spec, [generation.prompt, generation.negative_prompt])
    services.generation_complete(
        generation=generation,
        input_text_tokens=text_tokens,
        output_tokens=spec.output_tokens(generation.width, generation.height) * generation.n,
        inference_seconds=inference_seconds,
        device_wait_seconds=device_wait_seconds,
    )


def _task_inputs(generation: Generation) -> dict:
    """What an edit or variation adds to a run (its stored inputs), and the preview
    callback of a streaming request."""
    extra: dict = {}
    if generation.params.get("instruction"):
        extra.update(references=load_references(generation))
    elif generation.kind in ("edit", "variation"):
        init_image, mask = load_inputs(generation)
        if init_image is None:
            raise FileNotFoundError(f"The input image of {generation.id} is not in storage.")
        extra.update(init_image=init_image, mask=mask, strength=generation.params["strength"])
    count = generation.params.get("partial_images") or 0
    if generation.params.get("stream") and count:

        def on_partial(k: int, image) -> None:
            data, _ = encode_image(image, generation.output_format, generation.output_compression)
            previews.save_preview(
                generation_id=generation.id, k=k, data=data, output_format=generation.output_format
            )

        extra.update(partial_images=count, on_partial=on_partial)
    return extra


def _arriving():
    """Tell the device's batcher that a job is on its way, so it waits for it."""
    from django.conf import settings

    if not settings.BATCHING:
        return contextlib.nullcontext()
    return runtime.batcher().arriving()


def _cancel_check(generation_id: str, interval: float = 0.2):
    """should_stop() for the engine: has a client asked to cancel? (one query per
    `interval` seconds at most, however fast the steps are)."""
    state = {"next": 0.0, "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if not state["stop"] and now >= state["next"]:
            state["next"] = now + interval
            state["stop"] = _cancel_requested(generation_id)
        return state["stop"]

    return should_stop


@retry_once
def _cancel_requested(generation_id: str) -> bool:
    # A read, safe to repeat: a database blip while the job runs costs one reconnect
    # instead of the job (left to a takeover, one attempt gone).
    return Generation.objects.filter(pk=generation_id, cancel_requested_at__isnull=False).exists()


def _fail(generation: Generation, code: str, message: str) -> None:
    logger.warning("failed %s code=%s: %s", generation.id, code, message)
    metrics.JOBS.labels(generation.model, "failed", code).inc()
    services.generation_fail(generation_id=generation.id, code=code, message=message)
