"""The retention of generations (imagehub/retention.py registers these purges).

Images: IMAGEHUB_IMAGE_RETENTION_DAYS after a generation was created, its stored files
(outputs, uploaded inputs, stream previews) are deleted through the `images` storage
(local files or S3, django-storages), their rows go, and the generation gets
`purged_at`: it keeps its status, price, charge, tokens and timings, and the API
answers 410 for its images.

Records: IMAGEHUB_GENERATION_RETENTION_DAYS after creation the generation row itself is
deleted. Money does not depend on it: the ledger entries name the generation by id
(`gen:<id>:hold`, `…:capture`, `…:release`) and stay, as do the monthly totals and the
hourly usage rollups; `reconcile_ledger` checks monthly totals only for months whose
records are all still kept.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from generations.formats import EXTENSIONS
from generations.models import GeneratedImage, Generation, GenerationInput
from generations.previews import preview_name
from imagehub.storage import images as storage

logger = logging.getLogger(__name__)


def _files_of(generations: list[Generation]) -> list[str]:
    ids = [g.id for g in generations]
    names = list(
        GeneratedImage.objects.filter(generation_id__in=ids).values_list("file", flat=True)
    )
    names += GenerationInput.objects.filter(generation_id__in=ids).values_list("file", flat=True)
    for generation in generations:
        previews = int((generation.params or {}).get("partial_images") or 0)
        if previews and generation.output_format in EXTENSIONS:
            names += [
                preview_name(generation.id, k, generation.output_format) for k in range(previews)
            ]
    return names


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            storage.delete(name)  # a missing file is not an error (local and S3)
        except OSError:
            logger.warning("retention: could not delete %s; left in storage", name, exc_info=True)


def images_purge_batch(now: datetime, batch_size: int) -> int:
    """Delete the files of up to `batch_size` generations past the image retention
    (oldest first) and mark them purged. Files go first: a crash in between leaves rows
    whose files are already gone, which the next batch finishes."""
    cutoff = now - timedelta(days=settings.IMAGE_RETENTION_DAYS)
    batch = list(
        Generation.objects.filter(purged_at__isnull=True, created_at__lt=cutoff)
        .exclude(status__in=Generation.ACTIVE)
        .order_by("created_at")
        .only("id", "params", "output_format")[:batch_size]
    )
    if not batch:
        return 0
    _delete_files(_files_of(batch))
    ids = [g.id for g in batch]
    with transaction.atomic():
        GeneratedImage.objects.filter(generation_id__in=ids).delete()
        GenerationInput.objects.filter(generation_id__in=ids).delete()
        Generation.objects.filter(pk__in=ids).update(purged_at=now)
    return len(ids)


def records_purge_batch(now: datetime, batch_size: int) -> int:
    """Delete up to `batch_size` generation records past the record retention (their
    files too, if the image purge has not run yet)."""
    cutoff = now - timedelta(days=settings.GENERATION_RETENTION_DAYS)
    batch = list(
        Generation.objects.filter(created_at__lt=cutoff)
        .exclude(status__in=Generation.ACTIVE)
        .order_by("created_at")
        .only("id", "params", "output_format", "purged_at")[:batch_size]
    )
    if not batch:
        return 0
    _delete_files(_files_of([g for g in batch if g.purged_at is None]))
    with transaction.atomic():
        Generation.objects.filter(pk__in=[g.id for g in batch]).delete()
    return len(batch)
