"""Reads of generations that views, pages, dashboards and commands share."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Case, Count, F, Min, Q, QuerySet, Sum, When
from django.db.models.functions import TruncMonth
from django.utils import timezone

from accounts.ledger import month_of
from accounts.models import Organization
from accounts.reconcile import HeldWork
from generations.catalog import models_on_queue, queue_of
from generations.models import INCIDENTS, Generation, QueueSample
from imagehub.db import retry_once


@retry_once  # a read, safe to repeat on a new connection
def generation_get_owned(*, organization: Organization, generation_id: str) -> Generation | None:
    """The organization's generation, or None (another tenant's looks like a missing one)."""
    return Generation.objects.filter(pk=generation_id, organization=organization).first()


_FILE_OF_GENERATION = re.compile(r"(?:^|/)(gen_[0-9a-f]{28})-")


def purged_generation_of_file(name: str) -> str | None:
    """The id of the generation a stored file name belongs to (outputs and inputs are
    named `<generation id>-…`) when the retention purge deleted its files or its record;
    None for any other name."""
    found = _FILE_OF_GENERATION.search(name)
    if found is None:
        return None
    row = Generation.objects.filter(pk=found[1]).values_list("purged_at", flat=True)
    purged_at = row.first() if row.exists() else "gone"
    return found[1] if purged_at is not None else None


def job_counts() -> dict[str, int]:
    """Jobs in flight by status, and what the recovery loop did in the last 24 hours
    (for the operator dashboard)."""
    counts = dict(
        Generation.objects.filter(status__in=Generation.ACTIVE)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    day_ago = timezone.now() - timedelta(days=1)
    # One read of the partial index generation_incidents: the day's few jobs that
    # needed recovery, not the day's thousands.
    recent = Generation.objects.filter(INCIDENTS, created_at__gte=day_ago).aggregate(
        recovered_24h=Count("id", filter=Q(recoveries__gt=0)),
        redispatched_24h=Count("id", filter=Q(dispatches__gt=1)),
        worker_lost_24h=Count("id", filter=Q(status="failed", error_code="worker_lost")),
    )
    return {**{status: counts.get(status, 0) for status in Generation.ACTIVE}, **recent}


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


def held_generations(
    *, organization_id: int | None = None, since=None, until=None
) -> QuerySet[Generation]:
    """The priced generations that reconciliation checks, optionally of one organization
    and created in [since, until)."""
    rows = Generation.objects.filter(price__gt=0)
    if organization_id is not None:
        rows = rows.filter(organization_id=organization_id)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows


def held_work(
    rows: QuerySet[Generation] | None = None, chunk_size: int = 2000
) -> Iterator[HeldWork]:
    """Every priced generation (of `rows`), as the ledger reconciliation sees it, read
    with a server-side cursor `chunk_size` rows at a time."""
    rows = held_generations() if rows is None else rows
    columns = ("id", "organization_id", "api_key_id", "created_at", "price", "charged", "status")
    for row in rows.values_list(*columns).iterator(chunk_size=chunk_size):
        reference, organization_id, api_key_id, created_at, price, charged, status = row
        yield HeldWork(
            reference=reference,
            organization_id=organization_id,
            api_key_id=api_key_id,
            month=month_of(created_at),
            price=price,
            charged=charged,
            status=status,
            finished=status in Generation.FINISHED,
        )


def monthly_committed(rows: QuerySet[Generation]) -> dict[tuple, int]:
    """What the generations of `rows` committed per (organization, key or None, month),
    summed in the database: captured once finished, the price held while in flight."""
    committed = Case(When(status__in=Generation.ACTIVE, then=F("price")), default=F("charged"))
    month = TruncMonth("created_at", tzinfo=dt.UTC)
    expected: dict[tuple, int] = {}
    rows = rows.annotate(month=month)
    per_org = rows.values("organization_id", "month").annotate(total=Sum(committed))
    for row in per_org.order_by():
        expected[(row["organization_id"], None, row["month"].date())] = row["total"]
    per_key = (
        rows.exclude(api_key_id=None)
        .values("organization_id", "api_key_id", "month")
        .annotate(total=Sum(committed))
    )
    for row in per_key.order_by():
        expected[(row["organization_id"], row["api_key_id"], row["month"].date())] = row["total"]
    return expected


def queue_history(hours: int = 24, now=None) -> dict:
    """Queued jobs per hour (the hour's highest minute sample) by model and by
    organization, oldest hour first, for the operator dashboard."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    hour_starts = [end - timedelta(hours=hours - i) for i in range(hours)]
    rows = QueueSample.objects.filter(at__gte=hour_starts[0]).values_list(
        "at", "model", "organization__name", "queued"
    )
    # Sum over the other dimension per minute, then keep each hour's peak.
    per_minute_model: dict = defaultdict(int)
    per_minute_org: dict = defaultdict(int)
    for at, model, organization, queued in rows:
        per_minute_model[(at, model)] += queued
        per_minute_org[(at, organization)] += queued

    def peaks(per_minute: dict) -> dict[str, list[int]]:
        series: dict[str, list[int]] = defaultdict(lambda: [0] * hours)
        for (at, name), queued in per_minute.items():
            index = int((at - hour_starts[0]).total_seconds() // 3600)
            if 0 <= index < hours:
                series[name][index] = max(series[name][index], queued)
        return dict(series)

    return {
        "hours": hour_starts,
        "by_model": peaks(per_minute_model),
        "by_organization": peaks(per_minute_org),
    }


def queue_pace(model: str, now=None) -> dict:
    """The jobs of `model`'s queue that finished in the last ten minutes: how many, and
    the first one's finish. One read of the partial index generation_succeeded (model,
    finished_at): those minutes only, whatever the size of the table."""
    now = now or timezone.now()
    models = models_on_queue(queue_of(model))
    return Generation.objects.filter(
        model__in=models,
        status=Generation.Status.SUCCEEDED,
        finished_at__gte=now - timedelta(minutes=10),
    ).aggregate(finished=Count("id"), first=Min("finished_at"))


def estimated_start_seconds(
    generation: Generation, position: int, now=None, recent: dict | None = None
) -> float | None:
    """Seconds until a queued job starts, from its queue position and the recent pace of
    its queue (`queue_pace`, read now unless given), or None without a recent pace."""
    now = now or timezone.now()
    recent = queue_pace(generation.model, now) if recent is None else recent
    if not recent["finished"]:
        return None
    span = max((now - recent["first"]).total_seconds(), 1.0)
    return round((position + 1) * span / recent["finished"], 1)
