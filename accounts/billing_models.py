"""The money and usage records of an organization: the credits ledger (CreditEntry), the
month's committed spend for the caps (MonthlySpend), hourly usage rollups (UsageRollup)
and the settled days' summaries of the operator dashboard (UsageDay). Money moves only
through accounts/ledger.py; usage through accounts/usage.py. Like accounts/webhooks/
models.py, this module does not import accounts/models.py, which imports it (Django
registers the models from there)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class CreditEntry(models.Model):
    """Append-only ledger of credit movements, in integer micro-credits.

    Each entry carries a unique idempotency key (``topup:<uuid>``, ``gen:<id>:capture``)
    so that a retried operation can never move money twice.
    """

    class Kind(models.TextChoices):
        TOPUP = "topup"
        HOLD = "hold"
        CAPTURE = "capture"
        RELEASE = "release"
        ADJUSTMENT = "adjustment"

    # Not indexed alone: (organization, created_at) below serves the lookups by tenant.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="ledger", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Signed change of the organization's available balance (credit_balance).
    amount = models.BigIntegerField()
    # Signed change of the money set aside for generations in flight (credits_held):
    # a hold moves P from available to held, a capture takes C out of held (spent), a
    # release moves R back from held to available.
    held = models.BigIntegerField(default=0)
    generation_id = models.CharField(max_length=40, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "credit entries"
        indexes = [models.Index(fields=["organization", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0) | ~Q(held=0), name="ledger_entry_moves_money"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d}/{self.held:+d} ({self.idempotency_key})"


class MonthlySpend(models.Model):
    """Money committed (held or captured) in one calendar month (UTC), per organization
    (api_key null) and per key, for the monthly caps. Changed only under the
    organization's row lock, together with the ledger entries that explain it."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.CASCADE, null=True, related_name="+"
    )
    month = models.DateField()
    amount = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["organization", "month"])]

    def __str__(self) -> str:
        return f"{self.organization_id}/{self.api_key_id or '*'} {self.month:%Y-%m}: {self.amount}"


# The columns the tenant's usage reads take from a rollup row (accounts/usage.py,
# accounts/dashboards.py), carried in its (organization, hour) index.
ROLLUP_READ_COLUMNS = [
    "model",
    "api_key",
    "user",
    "requests",
    "succeeded",
    "failed",
    "images",
    "credits",
    "input_tokens",
    "output_tokens",
    "latency_ms_total",
]


class UsageRollup(models.Model):
    """Usage per hour, organization, model, key and user, kept current as generations
    finish, so that usage pages and the usage API never scan raw generations."""

    # Only (organization, hour) is indexed (and `hour` by BRIN): every read is one
    # tenant's hours or every tenant's hours, and the key and user are filters within
    # those rows. Deleting a key or a user (the admin; tenants revoke keys) sets its rows'
    # key or user to NULL with one scan of this table: a rare operator action.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    hour = models.DateTimeField()
    model = models.CharField(max_length=200)
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, related_name="+", db_index=False
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
        db_index=False,
    )
    requests = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    images = models.PositiveIntegerField(default=0)
    credits = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    latency_ms_total = models.BigIntegerField(default=0)
    # Requests per logarithmic latency bucket ({"b<i>": count}), for percentiles within 1%
    # without reading raw generations; see accounts/usage.py.
    latency_histogram = models.JSONField(default=dict)
    # The LoRA adapters the requests applied: their ids, sorted, joined by "+" ("" for
    # none), so usage can be grouped by adapter set (GET /v1/usage?group_by=adapters).
    adapters = models.CharField(max_length=200, blank=True, default="", db_default="")

    class Meta:
        indexes = [
            # A tenant's hours, with every column its reads sum or group by (the usage
            # page and API, credits): index-only scans that read a few index pages, not
            # one heap page per hourly row. PostgreSQL only; elsewhere a plain index.
            models.Index(
                fields=["organization", "hour"],
                include=ROLLUP_READ_COLUMNS,
                name="usage_rollup_tenant_hours",
            ),
            # Every tenant's rows of a time range (the dashboard's unsettled days) use a
            # BRIN index on `hour`, PostgreSQL only, made by migration 0009: a few pages
            # for an append-mostly table, and never mistaken by the planner for a better
            # path than (organization, hour) on a tenant's query, as the B-tree was.
        ]

    def __str__(self) -> str:
        return f"{self.organization_id} {self.hour:%Y-%m-%d %H}h {self.model}"


class UsageDay(models.Model):
    """Every tenant's usage on one settled day (no generation of it can still finish),
    summed from that day's hourly rollups once, so that the operator dashboard reads
    one row per day instead of every rollup (accounts/usage_days.py)."""

    day = models.DateField(unique=True)
    # {"requests", "succeeded", "failed", "images", "credits"}: sums over every tenant.
    totals = models.JSONField(default=dict)
    # {model: {"requests", "failed", "images", "credits"}}
    by_model = models.JSONField(default=dict)
    # {organization id: {"requests", "images", "credits"}}
    by_organization = models.JSONField(default=dict)
    # The day's latency histogram over every tenant (accounts/usage.py buckets).
    latency_histogram = models.JSONField(default=dict)
    summed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"usage of {self.day:%Y-%m-%d}"
