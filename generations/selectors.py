"""Reads of generations that views, pages, dashboards and commands share."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from accounts.ledger import month_of
from accounts.models import Organization
from accounts.reconcile import HeldWork
from generations.models import Generation


def generation_get_owned(*, organization: Organization, generation_id: str) -> Generation | None:
    """The organization's generation, or None (another tenant's looks like a missing one)."""
    return Generation.objects.filter(pk=generation_id, organization=organization).first()


def job_counts() -> dict[str, int]:
    """Jobs in flight by status, and what the recovery loop did in the last 24 hours
    (for the operator dashboard)."""
    counts = dict(
        Generation.objects.filter(status__in=Generation.ACTIVE)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    day_ago = timezone.now() - timedelta(days=1)
    recent = Generation.objects.filter(created_at__gte=day_ago)
    return {
        **{status: counts.get(status, 0) for status in Generation.ACTIVE},
        "recovered_24h": recent.filter(recoveries__gt=0).count(),
        "redispatched_24h": recent.filter(dispatches__gt=1).count(),
        "worker_lost_24h": recent.filter(status="failed", error_code="worker_lost").count(),
    }


def stale_holds(now=None) -> list[Generation]:
    """Unfinished generations whose credits have been held for longer than any live job
    could hold them: running with no heartbeat for longer than the job time limit plus
    the takeover time, or queued for longer than the queue timeout plus the takeover
    time. The recovery loop settles these; any here means no worker is running it."""
    now = now or timezone.now()
    takeover = timedelta(seconds=settings.GENERATION_TAKEOVER_SECONDS)
    run_limit = now - timedelta(seconds=settings.GENERATION_TIME_LIMIT_SECONDS) - takeover
    queue_limit = now - timedelta(seconds=settings.GENERATION_QUEUE_TIMEOUT_SECONDS) - takeover
    return list(
        Generation.objects.filter(
            Q(status=Generation.Status.RUNNING)
            & (
                Q(heartbeat_at__lt=run_limit)
                | Q(heartbeat_at__isnull=True, started_at__lt=run_limit)
            )
            | Q(status=Generation.Status.QUEUED, created_at__lt=queue_limit)
        ).order_by("created_at")
    )


def held_work() -> Iterator[HeldWork]:
    """Every priced generation, as the ledger reconciliation sees it."""
    rows = Generation.objects.filter(price__gt=0).only(
        "id", "organization_id", "api_key_id", "created_at", "price", "charged", "status"
    )
    for generation in rows.iterator():
        yield HeldWork(
            reference=generation.id,
            organization_id=generation.organization_id,
            api_key_id=generation.api_key_id,
            month=month_of(generation.created_at),
            price=generation.price,
            charged=generation.charged,
            status=generation.status,
            finished=generation.is_finished,
        )
