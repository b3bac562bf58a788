"""Webhook deliveries: the outbox and the senders that work it off.

Life of a delivery. The state change a webhook reports writes a `WebhookDelivery` row
in its own transaction (`delivery_enqueue`), so a crash can lose the change and its
delivery together, never one of them. Once that commits, a small pool of sender threads
in the same process makes the first attempt at once. An attempt *claims* the row first
(a conditional update that pushes `next_attempt_at` a lease ahead and counts the
attempt), then makes the HTTP call outside any transaction, then records the answer in
another short transaction: done, or due again after an exponential backoff, until
WEBHOOK_RETRY_WINDOW_HOURS have passed. Retries, and first attempts whose process died
before making them, are picked up by `deliveries_due`, a step of the recovery loop that
every worker process runs (generations/recovery.py) with SELECT … FOR UPDATE SKIP LOCKED.
A sender that dies mid-attempt leaves the row due again when its lease runs out.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import random
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import Organization
from accounts.webhooks import http, signing
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint
from imagehub.db import reconnect
from imagehub.errors import NotFound

logger = logging.getLogger(__name__)

# Rows a recovery pass takes at once.
BATCH = 100


# --- the outbox ------------------------------------------------------------------------------


def delivery_enqueue(
    *,
    organization_id: int,
    generation_id: str,
    event: str,
    url: str,
    payload: dict,
    now: datetime | None = None,
) -> WebhookDelivery:
    """Record a delivery, in the caller's transaction; the first attempt follows its
    commit in a sender thread of this process."""
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.create(
        organization_id=organization_id,
        generation_id=generation_id,
        event=event,
        url=url,
        msg_id=signing.new_message_id(),
        body=json.dumps(payload, separators=(",", ":")),
        next_attempt_at=now,
        retry_until=now + timedelta(hours=settings.WEBHOOK_RETRY_WINDOW_HOURS),
        created_at=now,
    )
    transaction.on_commit(lambda: sender.submit_new(delivery))
    return delivery


def _lease() -> timedelta:
    """How long an attempt may take before its row is due again: an attempt waits at
    most the timeout to connect, to get the answer and to read it."""
    return timedelta(seconds=3 * settings.WEBHOOK_TIMEOUT_SECONDS + 5)


def retry_delay(attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: BASE, 2×BASE, 4×BASE … up to MAX, plus up
    to 10 % jitter so that a receiver coming back is not hit by every retry at once."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** min(max(attempts - 1, 0), 30)
    return min(base, settings.WEBHOOK_RETRY_MAX_SECONDS) * (1 + random.random() * 0.1)


def delivery_claim(
    *, delivery_id: int, now: datetime | None = None, known: WebhookDelivery | None = None
) -> WebhookDelivery | None:
    """Take one due delivery for an attempt (None if it is not due, or taken). `known`:
    the row as this process just wrote it, which saves reading it back."""
    now = now or timezone.now()
    taken = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=now + _lease(), attempts=F("attempts") + 1, last_attempt_at=now)
    if not taken:
        return None
    if known is None or known.attempts != 0:
        return WebhookDelivery.objects.filter(pk=delivery_id).first()
    known.attempts, known.next_attempt_at, known.last_attempt_at = 1, now + _lease(), now
    return known


def deliveries_due(*, now: datetime | None = None, inline: bool = False) -> int:
    """The recovery loop's step: claim the deliveries that are due (retries, and first
    attempts whose process died before making them) and hand them to this process's
    senders (`inline`: attempt them here, one after the other). Returns how many."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:BATCH]
        )
        if ids:
            WebhookDelivery.objects.filter(pk__in=ids).update(
                next_attempt_at=now + _lease(), attempts=F("attempts") + 1, last_attempt_at=now
            )
    if ids and inline:
        for delivery in WebhookDelivery.objects.filter(pk__in=ids).order_by("pk"):
            delivery_attempt(delivery=delivery, now=now)
    elif ids:
        sender.submit(ids, claimed=True)
    return len(ids)


def deliveries_purge_batch(now: datetime, batch_size: int) -> int:
    """Delete up to `batch_size` finished deliveries older than WEBHOOK_RETENTION_DAYS
    (bodies can carry images), oldest first: in primary-key order, which is creation
    order, so each batch starts where the last one ended. The workers' purge runs it
    (imagehub/retention.py)."""
    old = (
        WebhookDelivery.objects.filter(
            created_at__lt=now - timedelta(days=settings.WEBHOOK_RETENTION_DAYS),
            status__in=(WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED),
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    ids = list(old)
    return WebhookDelivery.objects.filter(pk__in=ids).delete()[0] if ids else 0


def deliveries_purge(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Every finished delivery past the retention, a batch at a time."""
    now = now or timezone.now()
    total = 0
    while (deleted := deliveries_purge_batch(now, batch_size)) > 0:
        total += deleted
    return total


def delivery_attempt(*, delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """Make the HTTP call of a claimed delivery and record what came of it."""
    endpoint = WebhookEndpoint.objects.filter(organization_id=delivery.organization_id).first()
    timestamp = int(now.timestamp()) if now else int(time.time())
    body = delivery.body.encode()
    error, code, refused = "", None, False
    if endpoint is None:
        error, refused = "the organization has no webhook signing secret", True
    else:
        headers = {
            "webhook-id": delivery.msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(
                endpoint.signing_secrets(now),
                msg_id=delivery.msg_id,
                timestamp=timestamp,
                body=body,
            ),
        }
        try:
            answer = http.post(
                delivery.url,
                body,
                headers,
                timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                max_response_bytes=settings.WEBHOOK_MAX_RESPONSE_BYTES,
                allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
            )
        except http.DestinationRefused as exc:
            error, refused = f"refused: {exc}", True
        else:
            code, error = answer.status, answer.error
            if code is not None and not answer.ok and not error:
                error = f"answered {code}"
            if answer.ok:
                return _record(delivery, now=now, code=code, succeeded=True)
    return _record(delivery, now=now, code=code, error=error, final=refused)


def _record(
    delivery: WebhookDelivery,
    *,
    now: datetime | None,
    code: int | None,
    succeeded: bool = False,
    error: str = "",
    final: bool = False,
) -> WebhookDelivery:
    now = now or timezone.now()
    fields: dict[str, Any] = {"last_status_code": code, "last_error": error[:500]}
    if succeeded:
        fields.update(
            status=WebhookDelivery.Status.SUCCEEDED, delivered_at=now, next_attempt_at=None
        )
    elif final or now >= delivery.retry_until:
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        fields.update(next_attempt_at=now + timedelta(seconds=retry_delay(delivery.attempts)))
    # Only the attempt that holds the claim records (a stale one, past its lease, not).
    WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts
    ).update(**fields)
    if succeeded:
        logger.info("delivered %s %s to %s", delivery.event, delivery.generation_id, delivery.url)
    else:
        logger.warning(
            "webhook %s of %s to %s failed (attempt %d): %s",
            delivery.event,
            delivery.generation_id,
            delivery.url,
            delivery.attempts,
            error or code,
        )
    delivery.refresh_from_db()
    return delivery


def delivery_redeliver(*, organization: Organization, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again now (same webhook-id), with a fresh retry window."""
    delivery = delivery_get(organization=organization, delivery_id=delivery_id)
    now = timezone.now()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at=now,
        retry_until=now + timedelta(hours=settings.WEBHOOK_RETRY_WINDOW_HOURS),
    )
    transaction.on_commit(lambda: sender.submit([delivery.pk], claimed=False))
    delivery.refresh_from_db()
    return delivery


def delivery_get(*, organization: Organization, delivery_id: int) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.filter(organization=organization, pk=delivery_id).first()
    if delivery is None:
        raise NotFound(
            f"No webhook delivery with id {delivery_id}.", param="id", code="delivery_not_found"
        )
    return delivery


def delivery_list(
    *, organization: Organization, before: int | None = None, status: str | None = None
) -> QuerySet[WebhookDelivery]:
    """Newest first; `before`: ids below it (the next page)."""
    rows = WebhookDelivery.objects.filter(organization=organization).defer("body")
    if before is not None:
        rows = rows.filter(pk__lt=before)
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-pk")


# --- the senders ---------------------------------------------------------------------------


class Sender:
    """Daemon threads of this process that make delivery attempts (a slow receiver
    holds one thread, not the others). Losing what is queued here loses nothing: the rows
    are due, and the recovery loop hands them to a sender again."""

    def __init__(self):
        self._queue: queue.Queue[tuple[int, bool, WebhookDelivery | None]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def submit(self, delivery_ids: list[int], *, claimed: bool) -> None:
        """Attempt these deliveries: `claimed` by the caller already, or to be claimed."""
        self._start()
        for delivery_id in delivery_ids:
            self._queue.put((delivery_id, claimed, None))

    def submit_new(self, delivery: WebhookDelivery) -> None:
        """The first attempt of a delivery this process just committed."""
        self._start()
        self._queue.put((delivery.pk, False, delivery))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Whether everything submitted so far was attempted within `timeout` (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def _start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the threads stayed in the parent
                self.__init__()
            if not self._threads:
                # A process that stops gracefully first lets the attempts it has queued
                # finish, for a while (a killed one leaves them to the recovery loop).
                atexit.register(self.wait_idle, min(settings.WEBHOOK_TIMEOUT_SECONDS + 1, 10))
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < settings.WEBHOOK_SENDER_THREADS:
                thread = threading.Thread(
                    target=self._run, name=f"imagehub-webhooks-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _run(self) -> None:
        while True:
            delivery_id, claimed, known = self._queue.get()
            try:
                if claimed:
                    delivery = WebhookDelivery.objects.filter(pk=delivery_id).first()
                else:
                    delivery = delivery_claim(delivery_id=delivery_id, known=known)
                if delivery is not None:
                    delivery_attempt(delivery=delivery)
            except Exception:  # noqa: BLE001 - the row stays due; the recovery loop retries
                logger.warning("webhook delivery %s: attempt failed", delivery_id, exc_info=True)
            finally:
                reconnect()  # hand the connection back between attempts
                self._queue.task_done()


sender = Sender()
