"""The worker's side of a job's LoRA adapters: the files, fetched once from storage into
a local folder (IMAGEHUB_ADAPTER_FILES_DIR) and checked against the digest taken at
upload, then handed to the engine by path. A file that is missing, altered or unreadable
fails its job alone (`adapter_error`) before it reaches the device."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from django.conf import settings

from generations.adapters.lora_files import LoraFileError, analyse, read_header
from generations.adapters.models import Adapter
from generations.adapters.services import adapter_mark_failed
from generations.engine import AdapterError, AdapterUse
from generations.models import Generation
from imagehub.storage import images

logger = logging.getLogger(__name__)


def adapter_uses(generation: Generation) -> tuple[AdapterUse, ...]:
    """The generation's adapters, their files local and checked. Raises AdapterError."""
    loras = (generation.params or {}).get("loras") or []
    if not loras:
        return ()
    found = Adapter.objects.in_bulk([lora["id"] for lora in loras])
    uses = []
    for lora in loras:
        adapter = found.get(lora["id"])
        if adapter is None:
            raise AdapterError(
                lora["id"], f"The adapter '{lora['id']}' was deleted after this request."
            )
        if not lora["scale"]:
            # Not applied (scale 0): no file needed.
            uses.append(AdapterUse(id=adapter.pk, path="", scale=0.0, bytes=adapter.bytes))
            continue
        path = local_file(adapter)
        uses.append(
            AdapterUse(id=adapter.pk, path=str(path), scale=lora["scale"], bytes=adapter.bytes)
        )
    return tuple(uses)


def local_file(adapter: Adapter) -> Path:
    """The adapter's file on this host (fetched on first use, named by its digest)."""
    folder = Path(settings.ADAPTER_FILES_DIR)
    path = folder / f"{adapter.pk}-{adapter.sha256[:16]}.safetensors"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle = tempfile.NamedTemporaryFile(dir=folder, prefix=".fetch-", delete=False)
    try:
        with handle, images.open(adapter.file.name, "rb") as stored:
            while chunk := stored.read(1024 * 1024):
                digest.update(chunk)
                handle.write(chunk)
    except (OSError, ValueError) as exc:
        os.unlink(handle.name)
        raise AdapterError(adapter.pk, f"The adapter's file could not be read: {exc}") from exc
    if digest.hexdigest() != adapter.sha256:
        os.unlink(handle.name)
        _corrupt(adapter, "its stored file differs from the one uploaded (corrupt in storage)")
    try:
        analyse(read_header(handle.name))
    except LoraFileError as exc:
        os.unlink(handle.name)
        _corrupt(adapter, str(exc))
    os.replace(handle.name, path)
    return path


def _corrupt(adapter: Adapter, reason: str):
    adapter_mark_failed(adapter_id=adapter.pk, message=reason)
    raise AdapterError(adapter.pk, f"The adapter '{adapter.pk}' is unusable: {reason}.")
