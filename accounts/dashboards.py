"""Numbers for the usage page and the operator dashboard, read from rollups only."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db.models import Sum
from django.db.models.functions import TruncDay

from accounts.hooks import hooks
from accounts.models import APIKey, Organization, UsageRollup
from accounts.usage import percentile_ms
from accounts.usage_days import usage_period


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days)]


def daily_series(rows, days: list[dt.date], label_of, metric: str) -> dict[str, list[int]]:
    """{label: [value per day]} from rows of (day, group, metric)."""
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    for row in rows:
        day = row["day"].date() if isinstance(row["day"], dt.datetime) else row["day"]
        if day in index:
            series[label_of(row)][index[day]] += row[metric] or 0
    return dict(series)


def _window(start: dt.date, end: dt.date):
    return (
        dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC),
        dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC),
    )


def tenant_usage(
    *, organization: Organization, start: dt.date, end: dt.date, only_keys_of=None
) -> dict:
    """Spend and images per day, by model and by key, for one organization."""
    since, until = _window(start, end)
    rows = UsageRollup.objects.filter(organization=organization, hour__gte=since, hour__lt=until)
    if only_keys_of is not None:
        rows = rows.filter(api_key__created_by=only_keys_of)
    per_day = rows.annotate(day=TruncDay("hour", tzinfo=dt.UTC))
    by_model = list(
        per_day.values("day", "model").annotate(credits=Sum("credits"), images=Sum("images"))
    )
    by_key = list(
        per_day.values("day", "api_key_id").annotate(credits=Sum("credits"), images=Sum("images"))
    )
    names = dict(APIKey.objects.filter(organization=organization).values_list("pk", "name"))
    days = _days(start, end)

    def key_label(row):
        return names.get(row["api_key_id"]) or f"key {row['api_key_id']}"

    totals = rows.aggregate(
        credits=Sum("credits"), images=Sum("images"), requests=Sum("requests"), failed=Sum("failed")
    )
    return {
        "days": days,
        "credits_by_model": daily_series(by_model, days, lambda r: r["model"], "credits"),
        "images_by_model": daily_series(by_model, days, lambda r: r["model"], "images"),
        "credits_by_key": daily_series(by_key, days, key_label, "credits"),
        "images_by_key": daily_series(by_key, days, key_label, "images"),
        "totals": {k: v or 0 for k, v in totals.items()},
    }


def operator_overview(*, start: dt.date, end: dt.date) -> dict:
    """Every organization: volume, money, failures, latency, per-model usage; read from
    the daily summaries (accounts/usage_days.py), so its cost follows the days shown."""
    days = _days(start, end)
    period = usage_period(start, end)
    totals = {
        k: period["totals"].get(k, 0) or 0 for k in ("images", "credits", "requests", "failed")
    }
    histogram = period["latency_histogram"]
    organizations = period["by_organization"]
    names = dict(
        Organization.objects.filter(pk__in=[int(pk) for pk in organizations]).values_list(
            "pk", "name"
        )
    )
    top = sorted(
        (
            {"organization_id": int(pk), "organization__name": names.get(int(pk), pk), **sums}
            for pk, sums in organizations.items()
        ),
        key=lambda r: (-r.get("credits", 0), -r.get("images", 0)),
    )[:10]
    per_model = sorted(
        ({"model": model, **sums} for model, sums in period["by_model"].items()),
        key=lambda r: -r.get("images", 0),
    )
    per_day = [
        {"day": day["day"], "model": model, **sums}
        for day in period["days"]
        for model, sums in day["by_model"].items()
    ]
    jobs = hooks.job_counts()
    return {
        **totals,
        "failure_pct": (100 * totals["failed"] / totals["requests"]) if totals["requests"] else 0.0,
        "active_organizations": sum(1 for sums in organizations.values() if sums.get("requests")),
        "p50_ms": percentile_ms(histogram, 0.50),
        "p95_ms": percentile_ms(histogram, 0.95),
        "p99_ms": percentile_ms(histogram, 0.99),
        "top_organizations": top,
        "per_model": per_model,
        "days": days,
        "images_by_model": daily_series(per_day, days, lambda r: r["model"], "images"),
        "credits_by_model": daily_series(per_day, days, lambda r: r["model"], "credits"),
        "queued": jobs.get("queued", 0),
        "running": jobs.get("running", 0),
        "jobs": jobs,
    }
