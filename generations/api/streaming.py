"""`stream: true`: the response as server-sent events, the way OpenAI streams images.

    event: image_generation.partial_image      (image_edit.partial_image for edits)
    data: {"type": ..., "b64_json": ..., "partial_image_index": 0, "created_at": ...,
           "size": "256x256", "quality": "auto", "background": "opaque",
           "output_format": "png"}

    event: image_generation.completed          (image_edit.completed), one per image
    data: {... the same fields without partial_image_index, plus "usage"}

Each completed event carries the usage of the whole request. A failure after the
stream began arrives as ``event: error`` with OpenAI's error envelope, which the
official SDKs raise as an APIError. Partial images come from the worker (see
generations/previews.py); this side only relays them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection
from django.http import StreamingHttpResponse

from generations import notify, presenters, previews
from generations.api import waiting
from generations.models import Generation
from generations.moderation.checks import ModerationBlocked, details_of
from imagehub.renderers import Base64Text, dumps_with_images


def _event(name: str, payload: dict) -> bytes:
    data = dumps_with_images(payload, lambda p: json.dumps(p, separators=(",", ":")))
    return b"".join((b"event: ", name.encode(), b"\ndata: ", data, b"\n\n"))


def _common(generation: Generation, b64: str) -> dict:
    return {
        "b64_json": b64,
        "created_at": int(time.time()),
        "size": generation.size,
        "quality": generation.quality,
        "background": "opaque",
        "output_format": generation.output_format,
    }


def _prefix(generation: Generation) -> str:
    return "image_edit" if generation.kind == "edit" else "image_generation"


def events(generation: Generation, timeout: float) -> Iterator[bytes]:
    """Partial images as the worker publishes them, then one completed event per image."""
    count = generation.params.get("partial_images") or 0
    prefix = _prefix(generation)
    keys = [previews.partial_key(generation.id, k) for k in range(count)]
    sent = 0
    try:
        # Subscribing first and re-reading after means no notice can be missed: what
        # happened before the subscription is in the database and the storage.
        with notify.subscription(generation.id, *keys) as wake:
            for generation in waiting.updates(generation, wake, timeout):  # noqa: B020
                # Previews are stored before the job completes, so a finished job's
                # previews are all there: send them first, as OpenAI does.
                while sent < count:
                    data = previews.read_preview(generation.id, sent, generation.output_format)
                    if data is None:
                        break
                    payload = _common(generation, Base64Text.of(data))
                    payload = {"type": f"{prefix}.partial_image", **payload}
                    payload["partial_image_index"] = sent
                    yield _event(payload["type"], payload)
                    sent += 1
        yield from _final(generation, prefix, timeout)
    finally:
        if count:
            previews.delete_previews(generation.id, count, generation.output_format)


def _final(generation: Generation, prefix: str, waited: float) -> Iterator[bytes]:
    if generation.status == Generation.Status.SUCCEEDED:
        usage = presenters.usage(generation)
        for image in generation.images.all():
            with image.file.open("rb") as handle:
                b64 = Base64Text.of(handle.read())
            payload = {"type": f"{prefix}.completed", **_common(generation, b64), "usage": usage}
            payload["generation_id"] = generation.id
            payload["seed"] = image.seed
            yield _event(payload["type"], payload)
        return
    if generation.is_finished:
        code = generation.error_code or generation.status
        message = generation.error_message or f"Generation {generation.status}."
        error_type = "server_error"
    else:
        code, error_type = "generation_timeout", "server_error"
        message = waiting.still_running_message(generation, waited)
    error = {"message": message, "type": error_type, "param": None, "code": code}
    moderation = details_of(generation)
    if moderation is not None:
        error.update(type=ModerationBlocked.type, moderation_details=moderation)
    yield _event("error", {"type": "error", "error": {**error, "generation_id": generation.id}})


# Under ASGI a stream is relayed by the event loop; each step of the events generator
# (which sleeps until the next notice) runs in one of these threads, so at most this many
# streams wait at once and more queue. Plain sync requests never use them.
_stream_threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="imagehub-sse")


async def _relay(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    done = object()

    def step():
        try:
            return next(iterator, done)
        finally:
            if not connection.in_atomic_block:
                connection.close()  # pool threads serve many streams

    try:
        while (part := await loop.run_in_executor(_stream_threads, step)) is not done:
            yield part
    finally:
        await loop.run_in_executor(_stream_threads, iterator.close)


def response(
    generation: Generation, timeout: float | None = None, *, asynchronous: bool = False
) -> StreamingHttpResponse:
    parts = events(generation, settings.SYNC_WAIT_SECONDS if timeout is None else timeout)
    stream = StreamingHttpResponse(
        _relay(parts) if asynchronous else parts, content_type="text/event-stream"
    )
    stream["Cache-Control"] = "no-cache"
    stream["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
    stream["x-generation-id"] = generation.id
    return stream
