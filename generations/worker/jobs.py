"""What a worker does with one generation id: claim, run, store, complete (the worker
process's side of a job; the actor in generations/worker/actors.py calls it).

Safe to run again for the same id: a finished job is skipped, a job whose images were
partly stored generates only the missing ones, and completion is a conditional update.
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait

from django.conf import settings
from django.db import connection
from dramatiq.middleware.time_limit import TimeLimitExceeded

from generations import lifecycle, previews
from generations.adapters.services import adapters_used
from generations.catalog import get_model
from generations.engine import AdapterError, Canceled, ModelLoadError, OutOfMemory, RunRequest
from generations.engine.cache import UnsupportedTask
from generations.formats import EXTENSIONS, encode_image
from generations.inputs import load_inputs, load_references
from generations.models import GeneratedImage, Generation
from generations.moderation.checks import (
    ModerationBlocked,
    OutputCheck,
    output_verdict,
    withheld_indices,
)
from generations.worker import probe, runtime
from generations.worker.adapters import adapter_uses
from generations.worker.liveness import WORKER_NAME, heartbeat
from imagehub import metrics
from imagehub.db import is_connection_error, retry_once

logger = logging.getLogger(__name__)


def run_generation(*, generation_id: str) -> None:
    """Run the job a message names, or the one fair share picks in its stead. The claim
    waits for room on the device (runtime.DeviceRoom): fair share is decided when the
    device can take the job, not when a thread is free."""
    with runtime.room.place(timeout=settings.GENERATION_TIME_LIMIT_SECONDS / 2) as place:
        claimed = lifecycle.generation_claim(generation_id=generation_id, worker=WORKER_NAME)
        if claimed is None:
            logger.info("skipped %s: nothing queued, or it runs on a live worker", generation_id)
            metrics.REDELIVERED.inc()
            return
        with heartbeat.running(claimed):
            _run_claimed(claimed, place)


def _run_claimed(generation_id: str, place: runtime.Place) -> None:
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
            _run(generation, place)
    except Canceled:
        logger.info("canceled %s while running", generation.id)
        lifecycle.generation_mark_canceled(generation_id=generation.id)
        metrics.JOBS.labels(generation.model, "canceled", "canceled").inc()
    except ModelLoadError as exc:
        if not isinstance(exc, UnsupportedTask):
            probe.report_failed(generation.model, str(exc))
        _fail(generation, "model_unavailable", str(exc))
    except OutOfMemory as exc:
        _fail(generation, "out_of_memory", f"The device ran out of memory: {exc}")
    except ModerationBlocked as exc:  # every image withheld by the output stage
        _fail(generation, exc.code, exc.message)
    except AdapterError as exc:
        _fail(generation, "adapter_error", str(exc))
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


def _run(generation: Generation, place: runtime.Place) -> None:
    spec = get_model(generation.model)
    if spec is None:
        raise ModelLoadError(f"Model '{generation.model}' is no longer in the catalog.")
    engine = runtime.get_engine()
    stored = set(generation.images.values_list("index", flat=True))
    # Images the output stage withheld in an earlier attempt are not made again.
    withheld_before = withheld_indices(generation)
    missing = [i for i in range(generation.n) if i not in stored | withheld_before]
    check = OutputCheck.for_(generation)  # None: no image classifier, nothing checked
    inference_seconds = generation.inference_seconds
    device_wait_seconds = generation.device_wait_seconds
    if missing:
        place.size(len(missing))
        adapters = adapter_uses(generation)
        inputs = _task_inputs(generation, spec, check)
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
                on_device=place.started,
                adapters=adapters,
                **inputs,
            )
        )
        adapters_used(adapter_ids=[use.id for use in adapters if use.scale])
        if isinstance(inputs.get("on_partial"), _PreviewSaver):
            inputs["on_partial"].wait()
        inference_seconds = result.inference_seconds
        device_wait_seconds = result.device_wait_seconds
        # The whole pipeline call's seconds, shared with the jobs batched with this one.
        metrics.INFERENCE.labels(spec.id).observe(inference_seconds)
        metrics.sample_device_memory(engine.device)
        verdicts = check.flagged(result.images) if check else [()] * len(result.images)
        withheld = [i for i, flagged in zip(missing, verdicts, strict=True) if flagged]
        # Withheld images are never stored, never charged.
        kept = [
            (i, image)
            for i, image, flagged in zip(missing, result.images, verdicts, strict=True)
            if not flagged
        ]
        _store(generation, spec, kept)
        if check is not None:
            output_verdict(generation, check, withheld, delivered=generation.images.count())
    delivered = generation.n - len(withheld_indices(generation))
    if delivered == 0:  # a redelivered job whose images were all withheld before
        raise ModerationBlocked("output", (generation.moderation or {}).get("categories", []))
    text_tokens = engine.text_tokens(spec, [generation.prompt, generation.negative_prompt])
    lifecycle.generation_complete(
        generation=generation,
        input_text_tokens=text_tokens,
        output_tokens=spec.output_tokens(generation.width, generation.height) * delivered,
        inference_seconds=inference_seconds,
        device_wait_seconds=device_wait_seconds,
    )


def _store(generation: Generation, spec, images: list[tuple[int, object]]) -> None:
    """Encode and upload a generation's images side by side (several cores; several
    requests in flight to S3), then write their rows here, in index order. An image that
    could not be stored fails the job once the rows of all the others are written: a
    redelivery makes only the missing ones."""

    def upload(index: int, image) -> GeneratedImage:
        data, content_type = encode_image(
            image, generation.output_format, generation.output_compression, spec.png_compression
        )
        return lifecycle.generation_image_file(
            generation=generation,
            index=index,
            seed=generation.seed + index,
            data=data,
            content_type=content_type,
            extension=EXTENSIONS[generation.output_format],
            width=image.width,
            height=image.height,
        )

    if len(images) == 1:  # no hand-off for the common case
        lifecycle.generation_image_row(image=upload(*images[0]))
        return
    futures = [_store_pool.submit(upload, index, image) for index, image in images]
    failure = None
    try:
        for future in futures:
            try:
                stored = _result(future)
            except Exception as exc:  # noqa: BLE001 - raised once the others are recorded
                failure = failure or exc
                continue
            lifecycle.generation_image_row(image=stored)
    finally:
        for future in futures:
            future.cancel()  # stopped early (killed, time limit): uploads not started yet
    if failure is not None:
        raise failure


def _result(future):
    """The future's result, waited for in short steps: Dramatiq's time limit interrupts
    Python code only, not a thread blocked on a lock."""
    while not wait([future], timeout=0.05).done:
        pass
    return future.result()  # its own exception, a TimeoutError of the upload's included


# Uploads of the images of multi-image jobs (I/O to S3, encoding that releases the GIL).
_store_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="imagehub-store")


def _task_inputs(generation: Generation, spec, check: OutputCheck | None = None) -> dict:
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
        extra.update(partial_images=count, on_partial=_PreviewSaver(generation, spec, check))
    return extra


class _PreviewSaver:
    """`on_partial` of a streaming job. The engine calls it in the device's thread, which
    must get back to the steps at once: encoding, storing and the `partial` event (a
    database write) run in the preview thread instead, in order; `wait()` holds the job
    until its previews are stored (a finished job's previews are all there).

    With an output check, each preview is checked before it is stored: a flagged one is
    dropped and the next allowed one takes its number, so the stream (which relays
    previews 0, 1, ... in order) never sees a gap and never a flagged image."""

    def __init__(self, generation: Generation, spec, check: OutputCheck | None = None):
        self.generation = generation
        self.spec = spec
        self.check = check
        self.stored = 0  # previews stored so far: the next one's number
        self.pending: list = []

    def __call__(self, k: int, image) -> None:
        self.pending.append(_preview_thread.submit(self._save, k, image))

    def _save(self, k: int, image) -> None:
        generation = self.generation
        try:
            if self.check is not None and not self.check.partial_allowed(image):
                logger.info("withheld preview %d of %s (content policy)", k, generation.id)
                return
            data, _ = encode_image(
                image, generation.output_format, generation.output_compression,
                self.spec.png_compression,
            )  # fmt: skip
            previews.save_preview(
                generation_id=generation.id,
                k=self.stored,
                data=data,
                output_format=generation.output_format,
            )
            self.stored += 1
        except Exception:  # noqa: BLE001 - a preview must never fail the job
            logger.warning("preview %d of %s was not stored", k, generation.id, exc_info=True)
        finally:
            connection.close()  # this thread serves every job of the process

    def wait(self) -> None:
        for future in self.pending:
            future.result()


_preview_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagehub-previews")


def _arriving():
    """Tell the device's batcher that a job is on its way, so it waits for it."""
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
    lifecycle.generation_fail(generation_id=generation.id, code=code, message=message)
