"""Recovery of jobs whose worker or message was lost: the writes behind the recovery
loop (generations/worker/liveness.py), safe with any number of workers running it.

Each pass takes its rows with SELECT … FOR UPDATE SKIP LOCKED, so two workers never act
on the same job, and sends messages only after its transaction commits (the row is the
outbox). A duplicate message costs nothing: claiming is a conditional update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from accounts.webhooks import delivery
from generations import lifecycle, services
from generations.models import Generation, QueueSample
from imagehub import metrics

logger = logging.getLogger(__name__)

# Rows per kind per pass: a backlog is worked off over a few passes, in short transactions.
BATCH = 200
# The longest wait between two sends of a job still queued.
MAX_REDISPATCH_SECONDS = 3600


@dataclass
class Pass:
    taken_over: int = 0
    worker_lost: int = 0
    redispatched: int = 0
    queue_timeout: int = 0

    def __bool__(self) -> bool:
        return any(vars(self).values())


def recover(now=None) -> Pass:
    """One pass: take over jobs whose heartbeat stopped, give up on those out of
    attempts, send again queued jobs whose message may be lost, and fail jobs queued
    for longer than the queue timeout."""
    now = now or timezone.now()
    done = Pass()
    _take_over(now, done)
    _redispatch(now, done)
    _expire_queued(now, done)
    _sample_queues(now)
    # Webhook retries, and first attempts that a process died before making.
    delivery.deliveries_due(now=now)
    if done:
        logger.info(
            "recovery: %d taken over, %d worker_lost, %d sent again, %d queue_timeout",
            done.taken_over,
            done.worker_lost,
            done.redispatched,
            done.queue_timeout,
        )
    return done


def _locked(rows):
    return rows.select_for_update(skip_locked=True).order_by("created_at")[:BATCH]


def _take_over(now, done: Pass) -> None:
    silent_since = now - timedelta(seconds=settings.GENERATION_TAKEOVER_SECONDS)
    with transaction.atomic():
        lost = list(
            _locked(
                Generation.objects.filter(status=Generation.Status.RUNNING).filter(
                    Q(heartbeat_at__lt=silent_since) | Q(heartbeat_at__isnull=True)
                )
            ).values_list("id", "model", "attempts", "cancel_requested_at")
        )
        again = []
        for generation_id, model, attempts, cancel_requested_at in lost:
            if cancel_requested_at is not None:
                lifecycle.generation_mark_canceled(generation_id=generation_id)
            elif attempts >= settings.GENERATION_MAX_ATTEMPTS:
                logger.warning(
                    "giving up on %s: its worker stopped answering on each of %d attempts",
                    generation_id,
                    attempts,
                )
                lifecycle.generation_fail(
                    generation_id=generation_id,
                    code="worker_lost",
                    message=f"The worker running this generation stopped answering, "
                    f"{attempts} time(s); the credits held for it were released.",
                )
                metrics.RECOVERED.labels("worker_lost").inc()
                metrics.JOBS.labels(model, "failed", "worker_lost").inc()
                done.worker_lost += 1
            else:
                again.append((generation_id, model))
        if again:
            Generation.objects.filter(pk__in=[g for g, _ in again]).update(
                status=Generation.Status.QUEUED,
                worker="",
                heartbeat_at=None,
                recoveries=F("recoveries") + 1,
                dispatches=F("dispatches") + 1,
                redispatch_at=now + timedelta(seconds=settings.GENERATION_REDISPATCH_SECONDS),
            )
            for generation_id, _ in again:
                logger.warning("taking over %s: its worker stopped answering", generation_id)
            _send_on_commit(again)
            metrics.RECOVERED.labels("takeover").inc(len(again))
            done.taken_over += len(again)


def _redispatch(now, done: Pass) -> None:
    with transaction.atomic():
        due = list(
            _locked(
                Generation.objects.filter(status=Generation.Status.QUEUED).filter(
                    Q(redispatch_at__lte=now) | Q(redispatch_at__isnull=True)
                )
            ).values_list("id", "model", "dispatches")
        )
        for generation_id, _, dispatches in due:
            # Sent 1, 2, 4 … × REDISPATCH after the last send: a long queue gets a few
            # copies at most, a lost message is sent again within REDISPATCH.
            backoff = min(
                settings.GENERATION_REDISPATCH_SECONDS * 2 ** min(dispatches, 12),
                MAX_REDISPATCH_SECONDS,
            )
            Generation.objects.filter(pk=generation_id).update(
                dispatches=F("dispatches") + 1, redispatch_at=now + timedelta(seconds=backoff)
            )
        if due:
            _send_on_commit([(g, model) for g, model, _ in due])
            metrics.RECOVERED.labels("redispatch").inc(len(due))
            done.redispatched += len(due)


def _expire_queued(now, done: Pass) -> None:
    too_old = now - timedelta(seconds=settings.GENERATION_QUEUE_TIMEOUT_SECONDS)
    with transaction.atomic():
        stale = list(
            _locked(
                Generation.objects.filter(status=Generation.Status.QUEUED, created_at__lt=too_old)
            ).values_list("id", flat=True)
        )
        for generation_id in stale:
            lifecycle.generation_fail(
                generation_id=generation_id,
                code="queue_timeout",
                message=f"No worker started this generation within "
                f"{settings.GENERATION_QUEUE_TIMEOUT_SECONDS} s; the credits held for it "
                "were released.",
            )
        metrics.RECOVERED.labels("queue_timeout").inc(len(stale))
        done.queue_timeout += len(stale)


def _sample_queues(now) -> None:
    """Record the jobs in flight per model and organization, once a minute (the first
    worker to get there writes the minute; the others find it written)."""
    minute = now.replace(second=0, microsecond=0)
    if QueueSample.objects.filter(at=minute).exists():
        return
    counts: dict[tuple[str, int], dict[str, int]] = {}
    rows = (
        Generation.objects.filter(status__in=Generation.ACTIVE)
        .values_list("model", "organization_id", "status")
        .annotate(n=Count("id"))
    )
    for model, organization_id, status, n in rows:
        counts.setdefault((model, organization_id), {"queued": 0, "running": 0})[status] = n
    QueueSample.objects.bulk_create(
        [
            QueueSample(at=minute, model=model, organization_id=org, **by_status)
            for (model, org), by_status in counts.items()
        ],
        ignore_conflicts=True,
    )
    if minute.minute == 0:  # hourly: keep a week
        QueueSample.objects.filter(at__lt=minute - timedelta(days=7)).delete()


def _send_on_commit(jobs: list[tuple[str, str]]) -> None:
    def send():
        for generation_id, model in jobs:
            services.generation_dispatch(generation_id=generation_id, model=model)

    transaction.on_commit(send)
