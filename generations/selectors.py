"""Reads of generations that views, pages, dashboards and commands share."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count

from accounts.ledger import month_of
from accounts.models import Organization
from accounts.reconcile import HeldWork
from generations.models import Generation


def generation_get_owned(*, organization: Organization, generation_id: str) -> Generation | None:
    """The organization's generation, or None (another tenant's looks like a missing one)."""
    return Generation.objects.filter(pk=generation_id, organization=organization).first()


def job_counts() -> dict[str, int]:
    """Generations in flight by status (for the operator dashboard)."""
    counts = dict(
        Generation.objects.filter(status__in=Generation.ACTIVE)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return {status: counts.get(status, 0) for status in Generation.ACTIVE}


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
