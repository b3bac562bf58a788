"""The writes of a generation's life: create (price, hold, record, enqueue), claim,
store images, and one `_finish` transition for succeeded, failed and canceled. Each is a
conditional update, safe to repeat; money moves in accounts.ledger, once.
"""

from __future__ import annotations

import functools
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.idempotency import Idempotency, idempotency_lookup, idempotency_record
from accounts.ledger import (
    credits_authorize,
    credits_hold,
    credits_settle,
    lock_organization,
    month_of,
)
from accounts.models import APIKey, Organization
from accounts.usage import usage_record
from generations import events, fairness, notify, pricing
from generations.availability import model_check_available
from generations.catalog import models_on_queue, queue_of
from generations.inputs import store_inputs
from generations.models import GeneratedImage, Generation, new_generation_id
from generations.types import GenerationRequest
from imagehub import broker, metrics
from imagehub.db import CONNECTION_ERRORS, reconnect, retry_once
from imagehub.errors import PermissionError_

logger = logging.getLogger(__name__)

# The actor that runs a generation (generations/worker/actors.py), by name: sending needs
# no worker code.
GENERATE = "generations.generate"
SEED_LIMIT = 2**32


def generation_dispatch(*, generation_id: str, model: str) -> bool:
    """Send the job to its model's queue (the default queue unless the catalog says).

    The row is the outbox: it was committed before this runs. If the broker cannot take
    the message now, the job stays queued and is due for sending at once; a worker's
    recovery loop sends it when the broker is back (generations/recovery.py). Returns
    whether the broker took it."""
    try:
        broker.send(queue_name=queue_of(model), actor_name=GENERATE, args=(generation_id,))
    except Exception as exc:  # noqa: BLE001 - any broker failure: the outbox has the job
        logger.warning(
            "broker unavailable, %s stays queued for the recovery loop to send: %s: %s",
            generation_id,
            type(exc).__name__,
            exc,
        )
        metrics.DISPATCH_FAILURES.inc()
        try:
            Generation.objects.filter(pk=generation_id, status=Generation.Status.QUEUED).update(
                redispatch_at=timezone.now()
            )
        except Exception:  # noqa: BLE001 - then it is sent after the usual redispatch delay
            logger.warning("could not mark %s for redispatch", generation_id, exc_info=True)
        return False
    return True


def _retry_create_once(create):
    """generation_create once more, on a new connection, if its connection dropped (a
    database blip): its transaction rolled back, so nothing was held or recorded. Only
    with the id the caller chose for the generation: if the connection dropped at COMMIT
    and the first try committed after all, the retry finds that generation (and sends its
    message, lost with the connection) instead of making and charging a second one."""

    @functools.wraps(create)
    def wrapper(**kwargs):
        try:
            return create(**kwargs)
        except CONNECTION_ERRORS:
            generation_id = kwargs.get("generation_id")
            if generation_id is None or connection.in_atomic_block:
                raise
            logger.warning("database connection lost creating %s; trying again", generation_id)
            reconnect()
            made = Generation.objects.filter(pk=generation_id).first()
            if made is None:
                return create(**kwargs)
            generation_dispatch(generation_id=made.id, model=made.model)
            return made

    return wrapper


@_retry_create_once
def generation_create(
    *,
    order: GenerationRequest,
    organization: Organization,
    api_key: APIKey | None = None,
    user=None,
    generation_id: str | None = None,
    idempotency: Idempotency | None = None,
) -> Generation:
    """Price the order, authorize and hold the exact price, record a queued generation
    (with its input images), and enqueue it once all of that is committed. Raises 429
    errors when limits or money do not allow it, 403 when the key may not use the model.

    With an `idempotency` key that made a generation before, returns that one and
    charges nothing (its id differs from `generation_id`)."""
    if api_key is not None and not api_key.allows_model(order.spec.id):
        raise PermissionError_(
            f"This API key may not use the model '{order.spec.id}'.",
            param="model",
            code="model_not_allowed",
        )
    unit_price, price = pricing.request_price(
        order.spec,
        width=order.width,
        height=order.height,
        steps=order.priced_steps,
        n=order.n,
        input_pixels=sum(image.width * image.height for image in order.images),
    )
    seed = secrets.randbelow(SEED_LIMIT) if order.seed is None else order.seed
    with transaction.atomic():
        organization = lock_organization(organization.pk)
        if idempotency is not None:
            made = idempotency_lookup(organization=organization, idempotency=idempotency)
            if made is not None:
                logger.info("replayed %s for its Idempotency-Key", made)
                return Generation.objects.get(pk=made)
        model_check_available(order.spec)
        credits_authorize(
            organization=organization,
            api_key=api_key,
            price=price,
            active_jobs=_active_jobs(api_key),
        )
        generation = Generation.objects.create(
            id=generation_id or new_generation_id(),
            organization=organization,
            api_key=api_key,
            user=user,
            end_user=order.end_user,
            kind=order.kind,
            model=order.spec.id,
            prompt=order.prompt,
            negative_prompt=order.negative_prompt,
            n=order.n,
            width=order.width,
            height=order.height,
            steps=order.steps,
            guidance_scale=order.guidance_scale,
            seed=seed,
            quality=order.quality,
            response_format=order.response_format,
            output_format=order.output_format,
            output_compression=order.output_compression,
            input_image_tokens=order.input_image_tokens,
            params=order.params(seed=seed),
            price=price,
            unit_price=unit_price,
            # Sent on commit; sent again from the outbox if still queued by then.
            dispatches=1,
            redispatch_at=timezone.now()
            + timedelta(seconds=settings.GENERATION_REDISPATCH_SECONDS),
        )
        credits_hold(
            organization=organization,
            api_key_id=generation.api_key_id,
            reference=generation.id,
            price=price,
            month=month_of(generation.created_at),
        )
        store_inputs(generation, order)
        if idempotency is not None:
            idempotency_record(
                organization=organization, idempotency=idempotency, reference=generation.id
            )
        transaction.on_commit(
            lambda: generation_dispatch(generation_id=generation.id, model=generation.model)
        )
        events.generation_event(generation, "queued")  # commits with the job
    logger.info(
        "queued %s org=%s model=%s n=%d size=%s steps=%d price=%d",
        generation.id,
        generation.organization_id,
        generation.model,
        generation.n,
        generation.size,
        generation.steps,
        generation.price,
    )
    return generation


def _active_jobs(api_key: APIKey | None) -> int:
    """The key's live jobs: queued, or running with a heartbeat (a job whose worker died
    is not counted against the key's concurrency: it is about to be taken over)."""
    if api_key is None:
        return 0
    return (
        Generation.objects.filter(api_key=api_key)
        .filter(Q(status=Generation.Status.QUEUED) | _running_alive())
        .count()
    )


def _running_alive() -> Q:
    silent_since = timezone.now() - timedelta(seconds=settings.GENERATION_TAKEOVER_SECONDS)
    return Q(status=Generation.Status.RUNNING, heartbeat_at__gte=silent_since)


def _running_lost() -> Q:
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
            _running_lost() & Q(attempts__lt=settings.GENERATION_MAX_ATTEMPTS)
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
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        # Another delivery of the same job won the race; drop our copy of the file.
        image.file.storage.delete(image.file.name)
        return GeneratedImage.objects.get(generation=generation, index=index)
    return image


@retry_once
def _finish(
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
            rows = rows.filter(_running_lost())
        done = rows.update(status=status, finished_at=timezone.now(), **fields)
        if done:
            _settle(Generation.objects.get(pk=generation_id))
            events.generation_finished(generation_id)  # commits with the change
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
    )


def generation_complete(
    *,
    generation: Generation,
    input_text_tokens: int,
    output_tokens: int,
    inference_seconds: float | None,
    device_wait_seconds: float | None = None,
) -> bool:
    return _finish(
        generation.pk,
        status=Generation.Status.SUCCEEDED,
        from_statuses=(Generation.Status.RUNNING,),
        input_text_tokens=input_text_tokens,
        output_tokens=output_tokens,
        inference_seconds=inference_seconds,
        device_wait_seconds=device_wait_seconds,
    )


def generation_fail(*, generation_id: str, code: str, message: str) -> bool:
    return _finish(
        generation_id,
        status=Generation.Status.FAILED,
        from_statuses=Generation.ACTIVE,
        error_code=code,
        error_message=message[:2000],
    )


def generation_cancel(*, generation: Generation) -> Generation:
    """Cancel at once if queued, or running on a worker that died (releasing the hold);
    ask a live worker to stop at its next step; leave a finished generation as it is."""
    canceled = _finish(
        generation.pk,
        status=Generation.Status.CANCELED,
        from_statuses=(Generation.Status.QUEUED,),
        error_code="canceled",
        error_message="Canceled before it started.",
    ) or _finish(
        generation.pk,
        status=Generation.Status.CANCELED,
        from_statuses=(Generation.Status.RUNNING,),
        lost=True,
        error_code="canceled",
        error_message="Canceled after its worker stopped answering.",
    )
    if not canceled:
        Generation.objects.filter(
            pk=generation.pk, status=Generation.Status.RUNNING, cancel_requested_at=None
        ).update(cancel_requested_at=timezone.now())
    generation.refresh_from_db()
    logger.info("cancel requested for %s: now %s", generation.pk, generation.status)
    return generation


def generation_mark_canceled(*, generation_id: str) -> bool:
    """The worker stopped a running job on request: release everything, once."""
    return _finish(
        generation_id,
        status=Generation.Status.CANCELED,
        from_statuses=(Generation.Status.RUNNING,),
        error_code="canceled",
        error_message="Canceled while running; stopped between two steps.",
    )
