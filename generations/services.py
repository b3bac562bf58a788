"""The writes a client's request makes: create a generation (price, hold, record,
enqueue) and cancel it. What happens to it after, on the worker's side (claim, heartbeat,
images, the one `finish` transition that settles), is generations/lifecycle.py's. Each is
a conditional update, safe to repeat; money moves in accounts.ledger, once.
"""

from __future__ import annotations

import functools
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.idempotency import Idempotency, idempotency_lookup, idempotency_record
from accounts.ledger import (
    credits_authorize,
    credits_hold,
    lock_organization,
    month_of,
)
from accounts.models import APIKey, Organization
from generations import events, lifecycle, pricing
from generations.adapters.pricing import adapter_charges
from generations.availability import model_check_available
from generations.catalog import queue_of
from generations.inputs import store_inputs
from generations.models import Generation, new_generation_id
from generations.moderation.checks import input_check
from generations.types import GenerationRequest
from imagehub import broker, metrics
from imagehub.db import CONNECTION_ERRORS, reconnect
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
    # The content policy's input stage: a refusal is recorded and costs nothing.
    input_check(order=order, organization=organization, api_key=api_key, user=user)
    loras = adapter_charges(order.loras)
    unit_price, price = pricing.request_price(
        order.spec,
        width=order.width,
        height=order.height,
        steps=order.priced_steps,
        n=order.n,
        input_pixels=sum(image.width * image.height for image in order.images),
        adapter_surcharge=sum(lora["surcharge"] for lora in loras),
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
            active_jobs=lambda: _active_jobs(api_key),
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
            params={**order.params(seed=seed), "loras": loras},
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
        .filter(Q(status=Generation.Status.QUEUED) | lifecycle.running_alive())
        .count()
    )


def generation_cancel(*, generation: Generation) -> Generation:
    """Cancel at once if queued, or running on a worker that died (releasing the hold);
    ask a live worker to stop at its next step; leave a finished generation as it is."""
    canceled = lifecycle.finish(
        generation.pk,
        status=Generation.Status.CANCELED,
        from_statuses=(Generation.Status.QUEUED,),
        error_code="canceled",
        error_message="Canceled before it started.",
    ) or lifecycle.finish(
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
