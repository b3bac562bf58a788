"""Checks that the cached balances and counters agree with the ledger, entry by entry.

What was bought is described to it in plain values (`HeldWork`, one per reference that
took a hold): generations/selectors.py builds them from generation records, streamed in
chunks, and the monthly totals they imply are summed in the database, so that a check of
millions of generations runs in constant memory (`manage.py reconcile_ledger`).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from accounts.models import CreditEntry, MonthlySpend, Organization


@dataclass(frozen=True)
class HeldWork:
    """One priced piece of work (a generation) as the ledger should see it."""

    reference: str
    organization_id: int
    api_key_id: int | None
    month: dt.date  # the month its spend counts in
    price: int
    charged: int
    status: str
    finished: bool


def ledger_mismatches(work: Iterable[HeldWork] = ()) -> Iterator[str]:
    """Yield one line per disagreement; nothing when every number adds up."""
    work = [item for item in work if item.price > 0]
    yield from balance_mismatches()
    yield from generation_mismatches(work)
    yield from monthly_spend_mismatches(work)


def balance_mismatches(organization_id: int | None = None) -> Iterator[str]:
    """Each organization's cached balance and held amount against the sums of its ledger."""
    entries = CreditEntry.objects.all()
    organizations = Organization.objects.order_by("pk")
    if organization_id is not None:
        entries = entries.filter(organization_id=organization_id)
        organizations = organizations.filter(pk=organization_id)
    sums = {
        row["organization"]: row
        for row in entries.values("organization").annotate(amount=Sum("amount"), held=Sum("held"))
    }
    for org in organizations:
        row = sums.get(org.pk, {"amount": 0, "held": 0})
        if org.credit_balance != row["amount"]:
            yield (
                f"org {org.pk} ({org.name}): balance {org.credit_balance} but ledger sums to "
                f"{row['amount']}"
            )
        if org.credits_held != row["held"]:
            yield (
                f"org {org.pk} ({org.name}): held {org.credits_held} but ledger holds {row['held']}"
            )
        if org.credit_balance < 0 or org.credits_held < 0:
            yield f"org {org.pk} ({org.name}): negative balance or held amount"


def generation_mismatches(work: list[HeldWork]) -> Iterator[str]:
    """Each generation: a hold of its price; once finished, capture + release == hold and
    the capture equals what the record says was charged; while in flight, nothing else."""
    per_generation = (
        CreditEntry.objects.filter(generation_id__in=[item.reference for item in work])
        .values("generation_id")
        .annotate(
            hold=Sum("held", filter=Q(kind="hold")),
            captured=-Sum("held", filter=Q(kind="capture")),
            released=Sum("amount", filter=Q(kind="release")),
            entries=Count("id"),
        )
    )
    by_id = {row["generation_id"]: row for row in per_generation}
    for item in work:
        row = by_id.get(item.reference)
        if row is None or (row["hold"] or 0) != item.price:
            yield f"generation {item.reference}: no hold of its price {item.price}"
            continue
        captured, released = row["captured"] or 0, row["released"] or 0
        if item.finished:
            if captured + released != item.price:
                yield (
                    f"generation {item.reference}: captured {captured} + released {released} "
                    f"!= held {item.price}"
                )
            if captured != item.charged:
                yield (
                    f"generation {item.reference}: captured {captured} but the record says "
                    f"{item.charged}"
                )
        elif captured or released:
            yield f"generation {item.reference}: settled while still {item.status}"


def monthly_spend_mismatches(work: list[HeldWork]) -> Iterator[str]:
    """Monthly committed spend = holds - releases of the work of that month, per
    organization and per key."""
    expected: dict[tuple, int] = defaultdict(int)
    for item in work:
        committed = item.charged if item.finished else item.price
        expected[(item.organization_id, None, item.month)] += committed
        if item.api_key_id:
            expected[(item.organization_id, item.api_key_id, item.month)] += committed
    yield from monthly_totals_mismatches(expected, MonthlySpend.objects.all())


def monthly_totals_mismatches(expected: dict[tuple, int], rows) -> Iterator[str]:
    """The stored monthly totals (`rows`) against what the work says,
    {(organization id, key id or None, month): committed}."""
    expected = dict(expected)
    for row in rows:
        said = expected.pop((row.organization_id, row.api_key_id, row.month), 0)
        if row.amount != said:
            yield (
                f"monthly spend of org {row.organization_id} key {row.api_key_id} "
                f"{row.month:%Y-%m}: {row.amount}, generations say {said}"
            )
    for key, amount in expected.items():
        if amount:
            yield f"monthly spend of org {key[0]} key {key[1]} {key[2]:%Y-%m} missing ({amount})"
