"""How a generation looks on the wire: OpenAI's ImagesResponse plus imagehub's fields.

One shape for every reader: the Images API (generations/api/) and the webhook events
(generations/events.py) both send what `generation_payload` gives. Links to stored images
are absolute when the caller knows its base URL (the API: the request's; settings'
PUBLIC_BASE_URL wins everywhere), else paths.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from generations.catalog import models_on_queue, queue_of
from generations.fairness import queue_position, shares
from generations.models import Generation
from generations.moderation.checks import details_of
from generations.selectors import estimated_start_seconds, queue_pace
from generations.signed_urls import signed_url
from imagehub.db import retry_once
from imagehub.renderers import Base64Text


def usage(generation: Generation) -> dict:
    return {
        "input_tokens": generation.input_text_tokens + generation.input_image_tokens,
        "input_tokens_details": {
            "text_tokens": generation.input_text_tokens,
            "image_tokens": generation.input_image_tokens,
        },
        "output_tokens": generation.output_tokens,
        "total_tokens": generation.total_tokens,
        # imagehub extension: micro-credits captured for this request.
        "credits_charged": generation.charged,
    }


def _read(image) -> bytes:
    with image.file.open("rb") as handle:
        return handle.read()


# Reads of the files of multi-image answers, side by side (S3: one request each).
_readers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="imagehub-read")


def image_items(generation: Generation, base_url: str | None = None) -> list[dict]:
    items = []
    images = list(generation.images.all())
    if generation.response_format == "url":
        contents = [None] * len(images)
    elif len(images) > 1:
        contents = list(_readers.map(_read, images))
    else:
        contents = [_read(image) for image in images]
    for image, content in zip(images, contents, strict=True):
        item: dict = {}
        if content is None:
            item["url"] = signed_url(image.file, base_url)
        else:
            item["b64_json"] = Base64Text.of(content)
        # Diffusion models take the prompt as given: the "revised" prompt is the prompt.
        item["revised_prompt"] = generation.prompt
        item["seed"] = image.seed
        items.append(item)
    return items


def _unix(moment) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


class QueueLook:
    """One page's look at the queues: each queue's shares and pace read once for every
    queued job the page shows, instead of once per job (a list of 20 queued jobs)."""

    def __init__(self):
        self._seen: dict[str, tuple] = {}

    def position_and_wait(self, generation: Generation) -> tuple[int, float | None]:
        name = queue_of(generation.model)
        if name not in self._seen:
            self._seen[name] = (shares(models_on_queue(name)), queue_pace(generation.model))
        ranked, recent = self._seen[name]
        position = queue_position(generation, ranked)
        return position, estimated_start_seconds(generation, position, recent=recent)


@retry_once  # reads only; after a create it runs once the job is committed and charged
def generation_payload(
    generation: Generation,
    *,
    base_url: str | None = None,
    images: bool = True,
    queue: QueueLook | None = None,
) -> dict:
    """The generation object: status always, ImagesResponse fields once it succeeded."""
    payload = {
        "id": generation.id,
        "object": "image.generation",
        "status": generation.status,
        "model": generation.model,
        "created": int(generation.created_at.timestamp()),
        "size": generation.size,
        "quality": generation.quality,
        "output_format": generation.output_format,
        "background": "opaque",
        "n": generation.n,
        "seed": generation.seed,
        "steps": generation.steps,
        "guidance_scale": generation.guidance_scale,
        "timings": generation.timings(),
        "timestamps": {
            "queued": _unix(generation.created_at),
            "started": _unix(generation.started_at),
            "finished": _unix(generation.finished_at),
        },
        "price": generation.price,
    }
    loras = (generation.params or {}).get("loras")
    if loras:
        # imagehub extension: the LoRA adapters this generation used, with each one's
        # surcharge per image (micro-credits, included in `price`).
        payload["loras"] = [
            {
                "id": lora["id"],
                "name": lora.get("name", ""),
                "scale": lora["scale"],
                "price_per_image": lora.get("surcharge", 0),
            }
            for lora in loras
        ]
    if generation.status == Generation.Status.QUEUED:
        position, wait = (queue or QueueLook()).position_and_wait(generation)
        payload["queue_position"] = position
        payload["estimated_start"] = None if wait is None else int(time.time() + wait)
    if generation.status == Generation.Status.SUCCEEDED:
        if images:
            payload["data"] = image_items(generation, base_url)
        payload["usage"] = usage(generation)
    elif generation.status in (Generation.Status.FAILED, Generation.Status.CANCELED):
        payload["error"] = {
            "code": generation.error_code or generation.status,
            "message": generation.error_message,
        }
        moderation = details_of(generation)
        if moderation is not None:
            payload["error"]["moderation_details"] = moderation
    if generation.moderation and generation.status == Generation.Status.SUCCEEDED:
        # Some images (or partial images) were withheld by the content policy.
        payload["moderation_details"] = {
            "moderation_stage": "output",
            "categories": generation.moderation.get("categories", []),
            "images_withheld": len(generation.moderation.get("withheld", [])),
            "partial_images_withheld": generation.moderation.get("partials_withheld", 0),
        }
    return payload
