"""Partial images of a streaming request, between the worker and the web.

The engine decodes them from the latents (generations/engine/latents.py); the worker
encodes each one and stores it here, through the ``images`` storage under a predictable
name, and publishes a notice with the id ``<generation id>:partial:<k>`` on the
completion channel (generations/notify.py); the web process that streams the response
(generations/api/streaming.py) wakes up, reads the file and relays it as a server-sent
event, then deletes it.
"""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile

from generations import events, notify
from generations.formats import EXTENSIONS
from imagehub.storage import images as storage

logger = logging.getLogger(__name__)


def partial_key(generation_id: str, k: int) -> str:
    return f"{generation_id}:partial:{k}"


def preview_name(generation_id: str, k: int, output_format: str) -> str:
    return f"previews/{generation_id}-{k}.{EXTENSIONS[output_format]}"


def save_preview(*, generation_id: str, k: int, data: bytes, output_format: str) -> None:
    """Worker side: store preview `k` (once; a redelivered job keeps the first) and tell
    the streaming web request."""
    name = preview_name(generation_id, k, output_format)
    if not storage.exists(name):
        storage.save(name, ContentFile(data))
        events.generation_partial(generation_id, k)
    notify.publish(partial_key(generation_id, k))


def read_preview(generation_id: str, k: int, output_format: str) -> bytes | None:
    name = preview_name(generation_id, k, output_format)
    if not storage.exists(name):
        return None
    with storage.open(name, "rb") as handle:
        return handle.read()


def delete_previews(generation_id: str, count: int, output_format: str) -> None:
    for k in range(count):
        name = preview_name(generation_id, k, output_format)
        try:
            storage.delete(name)
        except OSError:  # pragma: no cover - best effort
            logger.warning("could not delete preview %s", name, exc_info=True)
