"""State changes of a generation. Each is a conditional update, safe to repeat."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.ledger import lock_organization
from generations import billing, notify
from generations.models import GeneratedImage, Generation

logger = logging.getLogger("generations.jobs")


def _enqueue(generation_id: str, model: str = "") -> None:
    """Send the job to its model's queue (the default queue unless the catalog says)."""
    from generations.actors import generate
    from generations.catalog import get_model
    from imagehub.broker import broker, ensure_local_worker

    ensure_local_worker()
    spec = get_model(model) if model else None
    message = generate.message(generation_id)
    if spec is not None and spec.queue and spec.queue != message.queue_name:
        broker.declare_queue(spec.queue)
        message = message.copy(queue_name=spec.queue)
    broker.enqueue(message)


def generation_create(**fields) -> Generation:
    """Authorize, hold the exact price, record a queued generation, and enqueue it once
    all of that is committed. Raises 429 errors when limits or money do not allow it."""
    with transaction.atomic():
        organization = lock_organization(fields["organization"].pk)
        billing.authorize(
            organization=organization, api_key=fields.get("api_key"), price=fields["price"]
        )
        generation = Generation.objects.create(**fields)
        billing.hold(generation=generation, organization=organization)
        transaction.on_commit(lambda: _enqueue(generation.id, generation.model))
    logger.info(
        "queued %s org=%s model=%s n=%d size=%s steps=%d",
        generation.id,
        generation.organization_id,
        generation.model,
        generation.n,
        generation.size,
        generation.steps,
    )
    return generation


def generation_claim(*, generation_id: str, worker: str) -> bool:
    """Take the job: queued, or running under a lease that has run out (its worker died)."""
    now = timezone.now()
    claimed = (
        Generation.objects.filter(pk=generation_id)
        .filter(
            Q(status=Generation.Status.QUEUED)
            | Q(status=Generation.Status.RUNNING, lease_expires_at__lt=now)
        )
        .update(
            status=Generation.Status.RUNNING,
            started_at=now,
            worker=worker,
            lease_expires_at=now + timedelta(seconds=settings.GENERATION_LEASE_SECONDS),
            attempts=F("attempts") + 1,
        )
    )
    return bool(claimed)


def generation_save_image(
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
    """Store one image file and its row; a repeat of the same index keeps the first."""
    existing = GeneratedImage.objects.filter(generation=generation, index=index).first()
    if existing:
        return existing
    day = generation.created_at.strftime("%Y/%m/%d")
    name = f"{generation.organization_id}/{day}/{generation.id}-{index}.{extension}"
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
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        # Another delivery of the same job won the race; drop our copy of the file.
        image.file.storage.delete(image.file.name)
        return GeneratedImage.objects.get(generation=generation, index=index)
    return image


def generation_complete(
    *,
    generation: Generation,
    input_text_tokens: int,
    output_tokens: int,
    inference_seconds: float | None,
    device_wait_seconds: float | None = None,
) -> bool:
    with transaction.atomic():
        done = Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).update(
            status=Generation.Status.SUCCEEDED,
            finished_at=timezone.now(),
            input_text_tokens=input_text_tokens,
            output_tokens=output_tokens,
            inference_seconds=inference_seconds,
            device_wait_seconds=device_wait_seconds,
            lease_expires_at=None,
        )
        if done:
            # Only the delivery that moved the status settles: money moves once.
            generation.refresh_from_db()
            billing.settle(generation=generation, delivered=generation.images.count())
        transaction.on_commit(lambda: notify.publish(generation.pk))
    return bool(done)


def generation_fail(*, generation_id: str, code: str, message: str) -> bool:
    with transaction.atomic():
        done = Generation.objects.filter(
            pk=generation_id,
            status__in=[Generation.Status.QUEUED, Generation.Status.RUNNING],
        ).update(
            status=Generation.Status.FAILED,
            error_code=code,
            error_message=message[:2000],
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        if done:
            billing.settle(generation=Generation.objects.get(pk=generation_id), delivered=0)
        transaction.on_commit(lambda: notify.publish(generation_id))
    return bool(done)


def generation_cancel(*, generation: Generation) -> Generation:
    """Cancel at once if queued (releasing the hold); ask the worker to stop at its next
    step if running; leave a finished generation as it is."""
    with transaction.atomic():
        canceled = Generation.objects.filter(
            pk=generation.pk, status=Generation.Status.QUEUED
        ).update(
            status=Generation.Status.CANCELED,
            error_code="canceled",
            error_message="Canceled before it started.",
            finished_at=timezone.now(),
        )
        if canceled:
            billing.settle(generation=Generation.objects.get(pk=generation.pk), delivered=0)
            transaction.on_commit(lambda: notify.publish(generation.pk))
        else:
            Generation.objects.filter(
                pk=generation.pk, status=Generation.Status.RUNNING, cancel_requested_at=None
            ).update(cancel_requested_at=timezone.now())
    generation.refresh_from_db()
    logger.info("cancel requested for %s: now %s", generation.pk, generation.status)
    return generation


def generation_mark_canceled(*, generation_id: str) -> bool:
    """The worker stopped a running job on request: release everything, once."""
    with transaction.atomic():
        done = Generation.objects.filter(pk=generation_id, status=Generation.Status.RUNNING).update(
            status=Generation.Status.CANCELED,
            error_code="canceled",
            error_message="Canceled while running; stopped between two steps.",
            finished_at=timezone.now(),
            lease_expires_at=None,
        )
        if done:
            billing.settle(generation=Generation.objects.get(pk=generation_id), delivered=0)
        transaction.on_commit(lambda: notify.publish(generation_id))
    return bool(done)
