"""The writes of adapters: upload (every check before anything is stored), delete, the
operator's shared adapters, and what the worker records (last use, a file it could not
load)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from generations.adapters.base_modules import AdapterMismatch, OriginalNames, check_fits
from generations.adapters.lora_files import LoraFileError, analyse, read_header
from generations.adapters.models import Adapter, new_adapter_id
from generations.catalog import get_model
from imagehub.errors import InvalidRequest, PermissionError_
from imagehub.storage import images

logger = logging.getLogger(__name__)

MAX_NAME = 200


def _local_path(upload) -> tuple[str, bool]:
    """A path to the uploaded bytes (Django keeps large uploads in a temporary file
    already; small ones are written to one). Returns (path, is_ours_to_delete)."""
    if hasattr(upload, "temporary_file_path"):
        return upload.temporary_file_path(), False
    handle = tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False)
    with handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    return handle.name, True


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def adapter_create(
    *,
    organization: Organization | None,
    user=None,
    name: str,
    base_model: str,
    upload,
    adapter_id: str | None = None,
) -> Adapter:
    """Check the uploaded LoRA (size, safetensors, a LoRA layout, modules of the base
    model's denoiser or text encoders), then store it. Raises InvalidRequest naming
    `file`, `base_model` or `name`. No organization: the operator's shared adapter."""
    spec = get_model(base_model) if base_model else None
    if spec is None:
        raise InvalidRequest(
            f"The model '{base_model}' does not exist. GET /v1/models lists the models.",
            param="base_model",
            code="model_not_found",
        )
    limit = settings.MAX_ADAPTER_BYTES
    if upload.size > limit:
        raise InvalidRequest(
            f"The adapter is {upload.size} bytes; this server accepts at most {limit}.",
            param="file",
            code="file_too_large",
        )
    filename = getattr(upload, "name", "") or ""
    name = (name or Path(filename).stem or "adapter").strip()[:MAX_NAME]
    path, ours = _local_path(upload)
    try:
        try:
            lora = analyse(read_header(path))
        except LoraFileError as exc:
            raise InvalidRequest(str(exc), param="file", code="invalid_adapter") from exc
        try:
            verified = check_fits(lora, spec)
        except AdapterMismatch as exc:
            raise InvalidRequest(str(exc), param="base_model", code="adapter_mismatch") from exc
        except OriginalNames as exc:
            raise InvalidRequest(str(exc), param="file", code="invalid_adapter") from exc
        if not verified:
            logger.info("adapter for %s checked for its layout only: model files not here", spec.id)
        digest = _sha256(path)
        adapter = Adapter(
            id=adapter_id or new_adapter_id(),
            organization=organization,
            created_by=user,
            name=name,
            base_model=spec.id,
            bytes=upload.size,
            sha256=digest,
            layout=lora.layout,
            rank=lora.rank,
            target_modules=lora.target_modules,
            components=lora.components,
            tensors=lora.tensors,
        )
        owner = organization.pk if organization is not None else "shared"
        with open(path, "rb") as handle:
            # Stored first, recorded second: a failed insert leaves no row without a file,
            # and the file it leaves is removed.
            stored = images.save(f"adapters/{owner}/{adapter.id}.safetensors", File(handle))
    finally:
        if ours:
            os.unlink(path)
    adapter.file.name = stored
    try:
        adapter.save(force_insert=True)
    except Exception:
        images.delete(stored)
        raise
    logger.info(
        "adapter %s uploaded org=%s model=%s bytes=%d rank=%d layout=%s",
        adapter.id,
        owner,
        spec.id,
        adapter.bytes,
        adapter.rank,
        adapter.layout,
    )
    return adapter


def adapter_delete(*, adapter: Adapter, organization: Organization) -> None:
    """Delete an adapter of the organization and its file. Generations that used it keep
    their record of it; queued ones naming it fail with `adapter_error`."""
    if adapter.organization_id != organization.pk:
        raise PermissionError_(
            f"The adapter '{adapter.pk}' is shared by the operator; it cannot be deleted here.",
            param="id",
            code="adapter_shared",
        )
    name = adapter.file.name
    with transaction.atomic():
        Adapter.objects.filter(pk=adapter.pk).delete()
        transaction.on_commit(lambda: images.delete(name))
    logger.info("adapter %s deleted org=%s", adapter.pk, organization.pk)


def adapter_register_shared(*, adapter_id: str, name: str, base_model: str, path: Path) -> Adapter:
    """The operator's shared adapter from a local file (build_demo_models): created once,
    replaced when the file changed."""
    existing = Adapter.objects.filter(pk=adapter_id).first()
    if existing is not None:
        if existing.sha256 == _sha256(str(path)) and images.exists(existing.file.name):
            return existing
        images.delete(existing.file.name)
        existing.delete()
    with open(path, "rb") as handle:
        upload = File(handle, name=path.name)
        return adapter_create(
            organization=None,
            name=name,
            base_model=base_model,
            upload=upload,
            adapter_id=adapter_id,
        )


def adapters_used(*, adapter_ids: Iterable[str]) -> None:
    """The worker ran a job with these adapters (the page's 'last used')."""
    ids = list(adapter_ids)
    if ids:
        Adapter.objects.filter(pk__in=ids).update(last_used_at=timezone.now())


def adapter_mark_failed(*, adapter_id: str, message: str) -> None:
    """A worker could not load the stored file: later requests naming it are refused."""
    Adapter.objects.filter(pk=adapter_id).update(
        status=Adapter.Status.FAILED, error_message=message[:2000]
    )
