"""Usage: the hourly rollups (written once per finished piece of work, read by the
usage API, the pages and the dashboards) and the month's spend.

Writes take plain values; reads never scan raw generations.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accounts.ledger import month_of
from accounts.models import APIKey, MonthlySpend, Organization, UsageRollup

# The latency histogram kept in UsageRollup.latency_histogram: logarithmic buckets, the
# way DDSketch keeps them. Bucket i holds latencies in (GAMMA**(i-1), GAMMA**i] ms, and a
# percentile read from it is within LATENCY_ACCURACY (1%) of the true value, whatever the
# spread of latencies; the keys are sparse ("b<i>": count), a few dozen per row in
# practice. Rows written before these buckets hold {"<upper bound ms>": count}; they are
# still read, with their bound as the value.
LATENCY_ACCURACY = 0.01
GAMMA = (1 + LATENCY_ACCURACY) / (1 - LATENCY_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)


def latency_bucket(ms: float) -> str:
    if ms <= 1:
        return "b0"
    return f"b{math.ceil(math.log(ms) / _LOG_GAMMA)}"


def _bucket_value(key: str) -> float | None:
    """The latency (ms) a bucket stands for: DDSketch's estimate, 2·γ^i / (γ + 1)."""
    if key.startswith("b"):
        index = int(key[1:])
        return 1.0 if index == 0 else 2 * GAMMA**index / (GAMMA + 1)
    if key == "inf":  # the old histogram's overflow bucket (over 300 s)
        return None
    return float(key)


def percentile_ms(histogram: dict[str, int], q: float) -> int | None:
    """The q-quantile of the latencies counted in `histogram`, in ms (nearest rank)."""
    valued = sorted(
        ((_bucket_value(key), count) for key, count in histogram.items() if count > 0),
        key=lambda item: math.inf if item[0] is None else item[0],
    )
    total = sum(count for _value, count in valued)
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, count in valued:
        seen += count
        if seen >= rank:
            return None if value is None else round(value)
    return None


def histogram_merge(histograms) -> dict[str, int]:
    merged: dict[str, int] = defaultdict(int)
    for histogram in histograms:
        for key, count in histogram.items():
            merged[key] += count
    return dict(merged)


def usage_record(
    *,
    organization_id: int,
    api_key_id: int | None,
    user_id: int | None,
    model: str,
    hour: dt.datetime,
    succeeded: bool,
    images: int,
    credits: int,
    input_tokens: int,
    output_tokens: int,
    latency_ms: int,
    adapters: str = "",
) -> None:
    """Add one finished request to its hourly rollup row. The caller holds the
    organization lock (accounts.ledger.lock_organization), which serializes the
    read-modify-write of the latency histogram."""
    row, _ = UsageRollup.objects.get_or_create(
        organization_id=organization_id,
        hour=hour.replace(minute=0, second=0, microsecond=0),
        model=model,
        api_key_id=api_key_id,
        user_id=user_id,
        adapters=adapters,
    )
    histogram = dict(row.latency_histogram)
    bucket = latency_bucket(latency_ms)
    histogram[bucket] = histogram.get(bucket, 0) + 1
    UsageRollup.objects.filter(pk=row.pk).update(
        requests=F("requests") + 1,
        succeeded=F("succeeded") + int(succeeded),
        failed=F("failed") + int(not succeeded),
        images=F("images") + images,
        credits=F("credits") + credits,
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
        latency_ms_total=F("latency_ms_total") + latency_ms,
        latency_histogram=histogram,
    )


GROUPS = {"model": "model", "key": "api_key_id", "user": "user__email", "adapters": "adapters"}
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
    """Spent: micro-credits captured this calendar month (UTC), for delivered images.
    (What the monthly caps count is `committed_this_month`: spent plus still held.)"""
    start = dt.datetime.combine(month_of(), dt.time(), tzinfo=dt.UTC)
    rows = UsageRollup.objects.filter(organization=organization, hour__gte=start)
    if api_key is not None:
        rows = rows.filter(api_key=api_key)
    return rows.aggregate(total=Sum("credits"))["total"] or 0


def committed_this_month(*, organization: Organization, api_key: APIKey | None = None) -> int:
    """Committed: captured plus held this month (holds minus releases), the figure the
    monthly spend caps are checked against (accounts.ledger.credits_authorize)."""
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
