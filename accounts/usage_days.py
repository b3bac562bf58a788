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
SUMMARY_FIELDS = ("totals", "by_model", "by_organization", "latency_histogram")


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


def usage_period(start: dt.date, end: dt.date, now: dt.datetime | None = None) -> dict:
    """Every tenant's usage over the days [start, end): the totals, the merged latency
    histogram, the sums per organization and per model, and `days` (each day's sums per
    model, oldest first). Settled days come from their stored summaries (made now where
    missing, a day without usage included), merged in the database on PostgreSQL; the
    days not settled yet (today, and yesterday in the small hours) from the rollups."""
    settled = min(settled_before(now), end)
    stored = UsageDay.objects.filter(day__gte=start, day__lt=settled)
    have = set(stored.values_list("day", flat=True))
    live, per_day = [], []
    for i in range((end - start).days):
        day = start + dt.timedelta(days=i)
        if day >= settled:
            live.append(live_summary(_start(day), _start(day + dt.timedelta(days=1))))
            per_day.append({"day": day, "by_model": live[-1]["by_model"]})
        elif day not in have:
            usage_day_summarize(day=day)
    per_day[:0] = [{"day": d, "by_model": m} for d, m in stored.values_list("day", "by_model")]
    if connection.vendor == "postgresql":
        parts = [_merged_in_database(stored), *live]
    else:
        parts = [{f: getattr(row, f) for f in SUMMARY_FIELDS} for row in stored] + live
    return {
        "totals": merge_counts({"all": p["totals"]} for p in parts).get("all", {}),
        "latency_histogram": histogram_merge(p["latency_histogram"] for p in parts),
        "by_organization": merge_counts(p["by_organization"] for p in parts),
        "by_model": merge_counts(p["by_model"] for p in parts),
        "days": sorted(per_day, key=lambda d: d["day"]),
    }


def _merged_in_database(days) -> dict:
    """The stored summaries of a queryset of UsageDay rows summed in SQL: no day's JSON
    comes to Python (PostgreSQL)."""
    inner, params = days.values("id").query.sql_with_params()
    picked = f"SELECT * FROM accounts_usageday WHERE id IN ({inner})"
    flat = "SELECT '{part}', k.key, NULL, SUM(k.value::bigint) FROM ({picked}) AS d, "
    flat += "jsonb_each_text(d.{part}) AS k GROUP BY k.key"
    nested = (
        "SELECT '{part}', o.key, m.key, SUM(m.value::bigint) FROM ({picked}) AS d, "
        "jsonb_each(d.{part}) AS o, jsonb_each_text(o.value) AS m GROUP BY o.key, m.key"
    )
    query = " UNION ALL ".join(
        [
            flat.format(part="totals", picked=picked),
            flat.format(part="latency_histogram", picked=picked),
            nested.format(part="by_organization", picked=picked),
            nested.format(part="by_model", picked=picked),
        ]
    )
    merged: dict = {field: {} for field in SUMMARY_FIELDS}
    with connection.cursor() as cursor:
        cursor.execute(query, params * 4)
        for part, key, metric, value in cursor.fetchall():
            if metric is None:
                merged[part][key] = int(value)
            else:
                merged[part].setdefault(key, {})[metric] = int(value)
    return merged


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
