"""Reads of money and usage for tenants' API and pages, from the rollup table only."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accounts.ledger import month_of
from accounts.models import APIKey, MonthlySpend, Organization, UsageRollup

GROUPS = {"model": "model", "key": "api_key_id", "user": "user__email"}
METRICS = (
    "requests",
    "succeeded",
    "failed",
    "images",
    "credits",
    "input_tokens",
    "output_tokens",
    "latency_ms_total",
)


def spent_this_month(*, organization: Organization, api_key: APIKey | None = None) -> int:
    """Captured micro-credits this calendar month (UTC)."""
    start = dt.datetime.combine(month_of(), dt.time(), tzinfo=dt.UTC)
    rows = UsageRollup.objects.filter(organization=organization, hour__gte=start)
    if api_key is not None:
        rows = rows.filter(api_key=api_key)
    return rows.aggregate(total=Sum("credits"))["total"] or 0


def committed_this_month(*, organization: Organization, api_key: APIKey | None = None) -> int:
    row = MonthlySpend.objects.filter(
        organization=organization,
        month=month_of(),
        **({"api_key": api_key} if api_key else {"api_key__isnull": True}),
    ).first()
    return row.amount if row else 0


def credits_summary(*, organization: Organization, api_key: APIKey | None) -> dict:
    organization.refresh_from_db(fields=["credit_balance", "credits_held", "monthly_spend_cap"])
    summary = {
        "object": "credits",
        "unit": "micro-credits (1 credit = 1,000,000)",
        "balance": organization.credit_balance,
        "held": organization.credits_held,
        "spent_this_month": spent_this_month(organization=organization),
        "committed_this_month": committed_this_month(organization=organization),
        "monthly_spend_cap": organization.monthly_spend_cap,
        "month": month_of().isoformat(),
    }
    if api_key is not None:
        summary["key"] = {
            "id": api_key.pk,
            "spent_this_month": spent_this_month(organization=organization, api_key=api_key),
            "committed_this_month": committed_this_month(
                organization=organization, api_key=api_key
            ),
            "monthly_spend_cap": api_key.monthly_spend_cap,
        }
    return summary


def usage_rows(
    *,
    organization: Organization,
    start: dt.datetime,
    end: dt.datetime,
    bucket: str,
    group_by: list[str],
    only_keys_of=None,
) -> QuerySet:
    """Usage per bucket (and group), oldest first, one dict per row."""
    rows = UsageRollup.objects.filter(organization=organization, hour__gte=start, hour__lt=end)
    if only_keys_of is not None:
        rows = rows.filter(Q(api_key__created_by=only_keys_of) | Q(user=only_keys_of))
    trunc = TruncDay("hour", tzinfo=dt.UTC) if bucket == "day" else TruncHour("hour", tzinfo=dt.UTC)
    fields = [GROUPS[g] for g in group_by]
    return (
        rows.annotate(bucket_start=trunc)
        .values("bucket_start", *fields)
        .annotate(**{m: Sum(m) for m in METRICS})
        .order_by("bucket_start", *fields)
    )


def default_window(now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    now = now or timezone.now()
    end = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - dt.timedelta(days=30), end
