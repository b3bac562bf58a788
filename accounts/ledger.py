"""The credits ledger: every change of a balance is an entry, and money moves once.

Amounts are integer micro-credits. Each entry changes the organization's available
balance (``amount``) and/or the money held for generations in flight (``held``), under
the organization's row lock, in the same transaction as the cached balances, and with a
unique idempotency key, so a retried or redelivered operation can never move money twice.

    top-up      amount +X
    hold        amount -P   held +P     (before a generation is enqueued)
    capture     held -C                 (images delivered × unit price: spent)
    release     amount +R   held -R     (what was held and not delivered)
    adjustment  amount ±X               (staff corrections)
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import CreditEntry, MonthlySpend, Organization


def lock_organization(organization_id: int) -> Organization:
    """The organization's row, locked until the end of the transaction. Every change of
    money takes this lock first, which serializes them per organization."""
    return Organization.objects.select_for_update().get(pk=organization_id)


def month_of(moment: dt.datetime | None = None) -> dt.date:
    moment = moment or timezone.now()
    return moment.astimezone(dt.UTC).date().replace(day=1)


@transaction.atomic
def ledger_post(
    *,
    organization: Organization,
    kind: str,
    amount: int = 0,
    held: int = 0,
    idempotency_key: str,
    generation_id: str = "",
    memo: str = "",
) -> CreditEntry | None:
    """Append one entry and move the cached balances with it.

    Returns None when an entry with this idempotency key already exists: that movement
    happened before and must not happen again.
    """
    if not isinstance(amount, int) or not isinstance(held, int):
        raise TypeError("ledger amounts are integer micro-credits")
    lock_organization(organization.pk)
    try:
        with transaction.atomic():
            entry = CreditEntry.objects.create(
                organization=organization,
                kind=kind,
                amount=amount,
                held=held,
                idempotency_key=idempotency_key,
                generation_id=generation_id,
                memo=memo,
            )
    except IntegrityError:
        if CreditEntry.objects.filter(idempotency_key=idempotency_key).exists():
            return None
        raise
    Organization.objects.filter(pk=organization.pk).update(
        credit_balance=F("credit_balance") + amount, credits_held=F("credits_held") + held
    )
    organization.refresh_from_db(fields=["credit_balance", "credits_held"])
    return entry


def credits_top_up(
    *, organization: Organization, amount: int, memo: str = "", idempotency_key: str | None = None
) -> CreditEntry | None:
    if not isinstance(amount, int) or amount <= 0:
        raise ValueError("a top-up must be a positive integer of micro-credits")
    return ledger_post(
        organization=organization,
        kind=CreditEntry.Kind.TOPUP,
        amount=amount,
        idempotency_key=idempotency_key or f"topup:{uuid.uuid4()}",
        memo=memo,
    )


def credits_adjust(*, organization: Organization, amount: int, memo: str) -> CreditEntry | None:
    if not isinstance(amount, int) or amount == 0:
        raise ValueError("an adjustment must be a non-zero integer of micro-credits")
    return ledger_post(
        organization=organization,
        kind=CreditEntry.Kind.ADJUSTMENT,
        amount=amount,
        idempotency_key=f"adjust:{uuid.uuid4()}",
        memo=memo,
    )


def _spend_rows(organization_id: int, api_key_id: int | None, month: dt.date):
    rows = MonthlySpend.objects.filter(organization_id=organization_id, month=month)
    org_row = rows.filter(api_key__isnull=True).first() or MonthlySpend.objects.create(
        organization_id=organization_id, api_key=None, month=month
    )
    key_row = None
    if api_key_id is not None:
        key_row = rows.filter(api_key_id=api_key_id).first() or MonthlySpend.objects.create(
            organization_id=organization_id, api_key_id=api_key_id, month=month
        )
    return org_row, key_row


def monthly_spend(
    *, organization_id: int, api_key_id: int | None, month: dt.date
) -> tuple[int, int]:
    """(organization, key) money committed in a month. Call under the organization lock
    for a value that cannot change before you act on it."""
    org_row, key_row = _spend_rows(organization_id, api_key_id, month)
    return org_row.amount, (key_row.amount if key_row else 0)


def monthly_spend_add(
    *, organization_id: int, api_key_id: int | None, month: dt.date, amount: int
) -> None:
    """Move the month's committed spend; the caller holds the organization lock."""
    org_row, key_row = _spend_rows(organization_id, api_key_id, month)
    ids = [org_row.pk] + ([key_row.pk] if key_row else [])
    MonthlySpend.objects.filter(pk__in=ids).update(amount=F("amount") + amount)
