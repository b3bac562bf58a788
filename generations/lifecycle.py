"""A generation's life after it was created, the worker's writes: claimed (the job fair
share picks), vouched for by its worker's heartbeat, its images stored, and finished once
— succeeded, failed or canceled — by one `finish` transition that settles the money (in
accounts.ledger, once). Each is a conditional update, safe to repeat. The request's
writes (create, cancel) are generations/services.py's.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.ledger import credits_settle, month_of
from accounts.usage import usage_record
from generations import events, fairness, notify
from generations.adapters.pricing import adapter_set_label
from generations.catalog import models_on_queue, queue_of
from generations.models import GeneratedImage, Generation
from imagehub.db import retry_once

logger = logging.getLogger(__name__)


def running_alive() -> Q:
    silent_since = timezone.now() - timedelta(seconds=settings.GENERATION_TAKEOVER_SECONDS)
    return Q(status=Generation.Status.RUNNING, heartbeat_at__gte=silent_since)


def running_lost() -> Q:
    """Running, but its worker has been silent for longer than the takeover time."""
    silent_since = timezone.now() - timedelta(seconds=settings.GENERATION_TAKEOVER_SECONDS)
    return Q(status=Generation.Status.RUNNING) & (
        Q(heartbeat_at__lt=silent_since) | Q(heartbeat_at__isnull=True)
    )


@retry_once
def generation_claim(*, generation_id: str, worker: str) -> str | None:
    """Claim a job for `worker`, prompted by the message that names `generation_id`.

    A named job that is running on a worker that stopped answering is taken over at once
    (while attempts are left). Otherwise the worker claims the job the fair-share policy
    picks among the queued jobs of that queue (generations/fairness.py): the named one
    when its organization is the pick. A message whose named job another worker took as
    its pick claims the pick too. Returns the id claimed, or None (nothing queued; a named
    job alive elsewhere is the recovery loop's if that worker dies)."""
    named = (
        Generation.objects.filter(pk=generation_id)
        .values("status", "model", "organization_id")
        .first()
    )
    if named is None:
        return None
    if named["status"] == Generation.Status.RUNNING and _claim(
        Generation.objects.filter(pk=generation_id).filter(
            running_lost() & Q(attempts__lt=settings.GENERATION_MAX_ATTEMPTS)
        ),
        worker,
    ):
        return generation_id
    # The named job is queued, or another message's worker took it as its fair-share pick
    # (then some queued job's own message was spent on it: take the pick in its stead, so
    # that every message claims a job while jobs are queued), or it has finished.
    models = models_on_queue(queue_of(named["model"]))
    for _ in range(5):  # another worker may take the pick first: choose again
        organization_id = fairness.next_organization(models, prefer=named["organization_id"])
        if organization_id is None:
            return None
        if organization_id == named["organization_id"] and _claim(
            Generation.objects.filter(pk=generation_id, status=Generation.Status.QUEUED),
            worker,
        ):
            return generation_id
        with transaction.atomic():
            pick = (
                Generation.objects.select_for_update(skip_locked=True)
                .filter(
                    status=Generation.Status.QUEUED,
                    model__in=models,
                    organization_id=organization_id,
                )
                .order_by("created_at")
                .values_list("id", flat=True)
                .first()
            )
            if pick is not None and _claim(
                Generation.objects.filter(pk=pick, status=Generation.Status.QUEUED), worker
            ):
                return pick
    return None


def _claim(rows, worker: str) -> bool:
    now = timezone.now()
    with transaction.atomic():
        claimed = rows.update(
            status=Generation.Status.RUNNING,
            started_at=now,
            worker=worker,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
        )
        if claimed:  # the `started` event commits with the claim
            events.generations_started(worker=worker, started_at=now)
    return bool(claimed)


@retry_once
def generation_heartbeat(*, generation_ids: list[str], worker: str) -> int:
    """The worker vouches that it is still running these jobs."""
    return Generation.objects.filter(
        pk__in=generation_ids, status=Generation.Status.RUNNING, worker=worker
    ).update(heartbeat_at=timezone.now())


@retry_once
def generation_save_image(**file) -> GeneratedImage:
    """Store one image file and its row: generation_image_file's arguments, then
    generation_image_row."""
    return generation_image_row(image=generation_image_file(**file))


def generation_image_file(
    *,
    generation: Generation,
    index: int,
    seed: int,
    data: bytes,
    content_type: str,
    extension: str,
    width: int,
    height: int,
) -> GeneratedImage:
    """Store one image's file through django-storages, no database: its row, unsaved (the
    worker uploads a generation's images side by side, then writes their rows)."""
    name = generation.file_name(f"{generation.id}-{index}", extension)
    image = GeneratedImage(
        generation=generation,
        index=index,
        seed=seed,
        width=width,
        height=height,
        content_type=content_type,
        bytes=len(data),
    )
    image.file.save(name, ContentFile(data), save=False)
    return image


def generation_image_row(*, image: GeneratedImage) -> GeneratedImage:
    """Write a stored file's row; a repeat of the same index keeps the first (the worker
    saves only the indexes it found missing, so a repeat is a race: no query to look
    first)."""
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        # Another delivery of the same job won the race; drop our copy of the file.
        image.file.storage.delete(image.file.name)
        return GeneratedImage.objects.get(generation=image.generation, index=image.index)
    return image


@retry_once
def finish(
    generation_id: str,
    *,
    status: str,
    from_statuses: tuple[str, ...],
    lost: bool = False,
    **fields,
) -> bool:
    """Move a generation to a final status, once: only the call whose conditional update
    moved it settles its money (capture what was delivered, release the rest) and records
    its usage. Every caller publishes, so waiters re-read the row either way. `lost`:
    only if it is running on a worker that stopped answering."""
    with transaction.atomic():
        rows = Generation.objects.filter(pk=generation_id, status__in=from_statuses)
        if lost:
            rows = rows.filter(running_lost())
        done = rows.update(status=status, finished_at=timezone.now(), **fields)
        if done:
            generation = Generation.objects.get(pk=generation_id)
            _settle(generation)
            events.generation_finished(generation)  # commits with the change
        transaction.on_commit(lambda: notify.publish(generation_id))
    return bool(done)


def _settle(generation: Generation) -> None:
    delivered = generation.images.count() if generation.status == Generation.Status.SUCCEEDED else 0
    captured = min(generation.price, generation.unit_price * delivered)
    credits_settle(
        organization_id=generation.organization_id,
        api_key_id=generation.api_key_id,
        reference=generation.id,
        held=generation.price,
        captured=captured,
        month=month_of(generation.created_at),
    )
    Generation.objects.filter(pk=generation.pk).update(charged=captured)
    generation.charged = captured
    succeeded = generation.status == Generation.Status.SUCCEEDED
    usage_record(
        organization_id=generation.organization_id,
        api_key_id=generation.api_key_id,
        user_id=generation.user_id,
        model=generation.model,
        hour=generation.created_at,
        succeeded=succeeded,
        images=delivered,
        credits=captured,
        input_tokens=generation.input_text_tokens + generation.input_image_tokens,
        output_tokens=generation.output_tokens if succeeded else 0,
        latency_ms=int((generation.finished_at - generation.created_at).total_seconds() * 1000),
        adapters=adapter_set_label(generation.params),
    )


def generation_complete(
    *,
    generation: Generation,
    input_text_tokens: int,
    output_tokens: int,
    inference_seconds: float | None,
    device_wait_seconds: float | None = None,
) -> bool:
    return finish(
        generation.pk,
        status=Generation.Status.SUCCEEDED,
        from_statuses=(Generation.Status.RUNNING,),
        input_text_tokens=input_text_tokens,
        output_tokens=output_tokens,
        inference_seconds=inference_seconds,
        device_wait_seconds=device_wait_seconds,
    )


def generation_fail(*, generation_id: str, code: str, message: str) -> bool:
    return finish(
        generation_id,
        status=Generation.Status.FAILED,
        from_statuses=Generation.ACTIVE,
        error_code=code,
        error_message=message[:2000],
    )


def generation_mark_canceled(*, generation_id: str) -> bool:
    """The worker stopped a running job on request: release everything, once."""
    return finish(
        generation_id,
        status=Generation.Status.CANCELED,
        from_statuses=(Generation.Status.RUNNING,),
        error_code="canceled",
        error_message="Canceled while running; stopped between two steps.",
    )
