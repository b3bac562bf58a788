"""Daily summaries of every tenant's usage, for the operator dashboard.

A rollup row is written under its generation's creation hour, when the generation
finishes: a day's rows can still change until every generation created that day has
finished or timed out (`settled_before`). A settled day is summed once into one
UsageDay row (totals, per model, per organization, the merged latency histogram); the
dashboard reads those rows for settled days and the live rollups only for the days that
are not settled yet, so its cost follows the number of days shown, not of rollups.
Summaries are made by the workers' housekeeping loop, and by the dashboard for any
settled day it finds without one.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import UsageDay, UsageRollup
from accounts.usage import histogram_merge

TOTALS = ("requests", "succeeded", "failed", "images", "credits")
PER_MODEL = ("requests", "failed", "images", "credits")
PER_ORGANIZATION = ("requests", "images", "credits")


def settled_before(now: dt.datetime | None = None) -> dt.date:
    """The first day whose rollups may still change: a generation created on an earlier
    day has finished, failed or timed out by now (queue timeout + time limit + takeover,
    and an hour's margin for a late recovery pass)."""
    now = now or timezone.now()
    margin = dt.timedelta(
        seconds=settings.GENERATION_QUEUE_TIMEOUT_SECONDS
        + settings.GENERATION_TIME_LIMIT_SECONDS
        + settings.GENERATION_TAKEOVER_SECONDS
        + 3600
    )
    return (now - margin).astimezone(dt.UTC).date()


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def latency_histogram_of(rows) -> dict[str, int]:
    """The merged latency histogram of a queryset of rollups: summed in the database on
    PostgreSQL (no row's JSON comes to Python), in Python elsewhere."""
    if connection.vendor != "postgresql":
        return histogram_merge(rows.values_list("latency_histogram", flat=True))
    inner, params = rows.values("latency_histogram").query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        # The planner counts 100 buckets per row and picks a parallel plan whose workers
        # take longer to start than this query of a few thousand rows takes alone.
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(
            "SELECT bucket.key, SUM(bucket.value::bigint) "
            f"FROM ({inner}) AS r, jsonb_each_text(r.latency_histogram) AS bucket "
            "GROUP BY bucket.key",
            params,
        )
        return {key: int(count) for key, count in cursor.fetchall() if count}


def _sums_in_one_scan(rows) -> tuple[dict, dict, dict]:
    """Totals, per model and per organization of a queryset of rollups, in one read of
    its rows (GROUPING SETS; PostgreSQL)."""
    inner, params = rows.values("model", "organization_id", *TOTALS).query.sql_with_params()
    sums = ", ".join(f"SUM(r.{m})::bigint" for m in TOTALS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT GROUPING(r.model, r.organization_id), r.model, r.organization_id, {sums} "
            f"FROM ({inner}) AS r GROUP BY GROUPING SETS ((), (r.model), (r.organization_id))",
            params,
        )
        found = cursor.fetchall()
    totals, by_model, by_organization = dict.fromkeys(TOTALS), {}, {}
    for grouping, model, organization_id, *values in found:
        metrics = dict(zip(TOTALS, values, strict=True))
        if grouping == 3:  # neither column grouped: the totals
            totals = metrics
        elif grouping == 1:  # per model
            by_model[model] = {m: metrics[m] for m in PER_MODEL}
        else:
            by_organization[str(organization_id)] = {m: metrics[m] for m in PER_ORGANIZATION}
    return totals, by_model, by_organization


def _sums_in_three_scans(rows) -> tuple[dict, dict, dict]:
    """The same as `_sums_in_one_scan`, with the ORM (SQLite)."""
    totals = rows.aggregate(**{m: Sum(m) for m in TOTALS})
    by_model = {
        r.pop("model"): r
        for r in rows.values("model").annotate(**{m: Sum(m) for m in PER_MODEL}).order_by()
    }
    by_organization = {
        str(r.pop("organization_id")): r
        for r in rows.values("organization_id")
        .annotate(**{m: Sum(m) for m in PER_ORGANIZATION})
        .order_by()
    }
    return totals, by_model, by_organization


def live_summary(since: dt.datetime, until: dt.datetime) -> dict:
    """The summary of the rollups in [since, until), computed now (SQL sums)."""
    rows = UsageRollup.objects.filter(hour__gte=since, hour__lt=until)
    sums = _sums_in_one_scan if connection.vendor == "postgresql" else _sums_in_three_scans
    totals, by_model, by_organization = sums(rows)
    return {
        "totals": {k: v or 0 for k, v in totals.items()},
        "by_model": by_model,
        "by_organization": by_organization,
        "latency_histogram": latency_histogram_of(rows),
    }


def usage_day_summarize(*, day: dt.date) -> UsageDay:
    """(Re)write the summary of one day from its rollups."""
    summary = live_summary(_start(day), _start(day + dt.timedelta(days=1)))
    try:
        with transaction.atomic():
            row, _ = UsageDay.objects.update_or_create(
                day=day, defaults={**summary, "summed_at": timezone.now()}
            )
    except IntegrityError:  # another process summed it at the same moment
        row = UsageDay.objects.get(day=day)
    return row


def usage_days(start: dt.date, end: dt.date, now: dt.datetime | None = None) -> list[dict]:
    """One summary per day of [start, end), oldest first: stored for settled days (made
    now where missing, a day without usage included), computed from the rollups for the
    days that are not settled yet (today, and yesterday in the small hours)."""
    settled = min(settled_before(now), end)
    stored = {row.day: row for row in UsageDay.objects.filter(day__gte=start, day__lt=settled)}
    days = []
    for i in range((end - start).days):
        day = start + dt.timedelta(days=i)
        if day >= settled:
            summary = live_summary(_start(day), _start(day + dt.timedelta(days=1)))
            days.append({**summary, "day": day})
        else:
            days.append(_as_dict(stored.get(day) or usage_day_summarize(day=day)))
    return days


def _as_dict(row: UsageDay) -> dict:
    return {
        "totals": row.totals,
        "by_model": row.by_model,
        "by_organization": row.by_organization,
        "latency_histogram": row.latency_histogram,
        "day": row.day,
    }


def usage_days_summarize_recent(*, days: int = 3, now: dt.datetime | None = None) -> int:
    """The housekeeping step: (re)sum the last few settled days, so that a rollup written
    late (a recovery pass after an outage) still reaches the summary. Returns days summed."""
    settled = settled_before(now)
    for back in range(1, days + 1):
        usage_day_summarize(day=settled - dt.timedelta(days=back))
    return days


def merge_counts(parts: Iterable[dict]) -> dict:
    """Sum {name: {metric: n}} dictionaries."""
    merged: dict = defaultdict(lambda: defaultdict(int))
    for part in parts:
        for name, metrics in part.items():
            for metric, value in metrics.items():
                merged[name][metric] += value or 0
    return {name: dict(metrics) for name, metrics in merged.items()}
