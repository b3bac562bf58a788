"""Checks that the cached balances and counters agree with the ledger, entry by entry."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from django.db.models import Count, Q, Sum

from accounts.ledger import month_of
from accounts.models import CreditEntry, MonthlySpend, Organization


def ledger_mismatches() -> Iterator[str]:
    """Yield one line per disagreement; nothing when every number adds up."""
    from generations.models import Generation

    sums = {
        row["organization"]: row
        for row in CreditEntry.objects.values("organization").annotate(
            amount=Sum("amount"), held=Sum("held")
        )
    }
    for org in Organization.objects.order_by("pk"):
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

    # Each generation: a hold of its price; once finished, capture + release == hold and
    # the capture equals what the record says was charged; while in flight, nothing else.
    per_generation = (
        CreditEntry.objects.exclude(generation_id="")
        .values("generation_id")
        .annotate(
            hold=Sum("held", filter=Q(kind="hold")),
            captured=-Sum("held", filter=Q(kind="capture")),
            released=Sum("amount", filter=Q(kind="release")),
            entries=Count("id"),
        )
    )
    by_id = {row["generation_id"]: row for row in per_generation}
    for generation in Generation.objects.filter(price__gt=0).only(
        "id", "price", "charged", "status"
    ):
        row = by_id.get(generation.id)
        if row is None or (row["hold"] or 0) != generation.price:
            yield f"generation {generation.id}: no hold of its price {generation.price}"
            continue
        captured, released = row["captured"] or 0, row["released"] or 0
        if generation.is_finished:
            if captured + released != generation.price:
                yield (
                    f"generation {generation.id}: captured {captured} + released {released} "
                    f"!= held {generation.price}"
                )
            if captured != generation.charged:
                yield (
                    f"generation {generation.id}: captured {captured} but the record says "
                    f"{generation.charged}"
                )
        elif captured or released:
            yield f"generation {generation.id}: settled while still {generation.status}"

    # Monthly committed spend = holds - releases of generations created that month.
    expected: dict[tuple, int] = defaultdict(int)
    for generation in Generation.objects.filter(price__gt=0).only(
        "id", "organization_id", "api_key_id", "created_at", "price", "charged", "status"
    ):
        committed = generation.charged if generation.is_finished else generation.price
        month = month_of(generation.created_at)
        expected[(generation.organization_id, None, month)] += committed
        if generation.api_key_id:
            expected[(generation.organization_id, generation.api_key_id, month)] += committed
    for row in MonthlySpend.objects.all():
        key = (row.organization_id, row.api_key_id, row.month)
        if row.amount != expected.pop(key, 0):
            yield (
                f"monthly spend of org {row.organization_id} key {row.api_key_id} "
                f"{row.month:%Y-%m}: {row.amount}, generations say {expected.get(key, 0)}"
            )
    for key, amount in expected.items():
        if amount:
            yield f"monthly spend of org {key[0]} key {key[1]} {key[2]:%Y-%m} missing ({amount})"
