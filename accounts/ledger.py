"""The credits ledger: every change of a balance is an entry, moved exactly once."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import CreditEntry, Organization


@transaction.atomic
def ledger_post(
    *, organization: Organization, kind: str, amount: int, idempotency_key: str, memo: str = ""
) -> CreditEntry | None:
    """Append one entry and move the cached balance with it.

    Returns None when an entry with this idempotency key already exists: the movement
    happened before and must not happen again.
    """
    if not isinstance(amount, int):
        raise TypeError("ledger amounts are integer micro-credits")
    # Lock the organization row so the balance and its entries change together.
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    try:
        with transaction.atomic():
            entry = CreditEntry.objects.create(
                organization=organization,
                kind=kind,
                amount=amount,
                idempotency_key=idempotency_key,
                memo=memo,
            )
    except IntegrityError:
        if CreditEntry.objects.filter(idempotency_key=idempotency_key).exists():
            return None
        raise
    Organization.objects.filter(pk=organization.pk).update(
        credit_balance=F("credit_balance") + amount
    )
    organization.refresh_from_db(fields=["credit_balance"])
    return entry


def credits_top_up(
    *, organization: Organization, amount: int, memo: str = "", idempotency_key: str | None = None
) -> CreditEntry | None:
    if amount <= 0:
        raise ValueError("a top-up must be positive")
    return ledger_post(
        organization=organization,
        kind=CreditEntry.Kind.TOPUP,
        amount=amount,
        idempotency_key=idempotency_key or f"topup:{uuid.uuid4()}",
        memo=memo,
    )
