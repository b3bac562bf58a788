"""What a worker does with one generation id: claim, run, store, complete.

Safe to run again for the same id: a finished job is skipped, a job whose images were
partly stored generates only the missing ones, and completion is a conditional update.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from dramatiq.middleware.time_limit import TimeLimitExceeded

from generations import services
from generations.catalog import get_model
from generations.engine import ModelLoadError, OutOfMemory, encode_image, get_engine
from generations.models import Generation

logger = logging.getLogger("generations.jobs")

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def run_generation(*, generation_id: str) -> None:
    if not services.generation_claim(generation_id=generation_id, worker=WORKER_NAME):
        logger.info("skipped %s: already taken or finished", generation_id)
        return
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
    started = time.perf_counter()
    try:
        _run(generation)
    except ModelLoadError as exc:
        _fail(generation, "model_unavailable", str(exc))
    except OutOfMemory as exc:
        _fail(generation, "out_of_memory", f"The device ran out of memory: {exc}")
    except TimeLimitExceeded:
        _fail(generation, "timeout", "The generation ran past the time limit and was stopped.")
    except Exception as exc:  # noqa: BLE001 - one job's failure must never kill the worker
        logger.exception("generation %s crashed", generation.id)
        _fail(generation, "engine_error", f"The engine failed: {type(exc).__name__}: {exc}")
    else:
        logger.info("succeeded %s in %.3fs", generation.id, time.perf_counter() - started)


def _run(generation: Generation) -> None:
    spec = get_model(generation.model)
    if spec is None:
        raise ModelLoadError(f"Model '{generation.model}' is no longer in the catalog.")
    engine = get_engine()
    stored = set(generation.images.values_list("index", flat=True))
    missing = [i for i in range(generation.n) if i not in stored]
    inference_seconds = generation.inference_seconds
    if missing:
        result = engine.run(
            spec,
            prompt=generation.prompt,
            negative_prompt=generation.negative_prompt,
            width=generation.width,
            height=generation.height,
            steps=generation.steps,
            guidance_scale=generation.guidance_scale,
            seeds=[generation.seed + i for i in missing],
        )
        inference_seconds = result.inference_seconds
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
    )


def _fail(generation: Generation, code: str, message: str) -> None:
    logger.warning("failed %s code=%s: %s", generation.id, code, message)
    services.generation_fail(generation_id=generation.id, code=code, message=message)
