"""A generation's webhook events: which state change is which event, and its body.

The body is ``{"type": "image.generation.<event>", "timestamp": …, "data": <the
generation object GET /v1/images/generations/{id} returns>}`` (generations/presenters.py).
Where it goes and how it is delivered (outbox row, signing, sending, retries) is the
webhooks package's business (accounts/webhooks/). `queued`, `started` and the final event
are recorded inside the transaction of the state change they report, so the two commit
together; `partial` has no state change to commit with and is recorded on its own.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from accounts.webhooks import delivery, endpoints
from generations.models import Generation
from generations.presenters import generation_payload

logger = logging.getLogger(__name__)

# Final statuses and the events that report them.
FINISHED = {
    Generation.Status.SUCCEEDED: "completed",
    Generation.Status.FAILED: "failed",
    Generation.Status.CANCELED: "canceled",
}


def generation_event(generation: Generation | str, event: str, **extra) -> None:
    """Record the `event` delivery of a generation if it (or its organization) asked
    for webhooks and for that event."""
    if isinstance(generation, str):
        generation = Generation.objects.get(pk=generation)
    params = generation.params or {}
    target = endpoints.webhook_target(
        organization_id=generation.organization_id,
        url=params.get("webhook"),
        events=params.get("webhook_events"),
    )
    if target is None or event not in target[1]:
        return
    now = timezone.now()
    delivery.delivery_enqueue(
        organization_id=generation.organization_id,
        generation_id=generation.id,
        event=event,
        url=target[0],
        payload={
            "type": f"image.generation.{event}",
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": generation_payload(generation),
            **extra,
        },
        now=now,
    )


def generation_partial(generation_id: str, k: int) -> None:
    """`partial` for preview `k`. A preview is a courtesy: a database error here is logged
    and the job goes on (there is no state change to commit it with)."""
    try:
        generation_event(generation_id, "partial", partial_image_index=k)
    except Exception:  # noqa: BLE001
        logger.warning("could not record the partial event of %s", generation_id, exc_info=True)


def generation_finished(generation: Generation) -> None:
    """completed, failed or canceled, from the final status of `generation` as it was just
    settled (the row read after the finish, with what the settlement charged)."""
    event = FINISHED.get(generation.status)
    if event is not None:
        generation_event(generation, event)


def generations_started(*, worker: str, started_at) -> None:
    """`started` for the job(s) a claim just took: the rows it stamped with this
    worker and this instant (the claim's own conditional update, in this transaction)."""
    for generation in Generation.objects.filter(
        status=Generation.Status.RUNNING, worker=worker, started_at=started_at
    ):
        generation_event(generation, "started")
