"""Money, all of it: the credits ledger, the checks before a charge, holds and their
settlement, monthly spend and the low-balance notice.

Every change of a balance is an entry, and money moves once. Amounts are integer
micro-credits. Each entry changes the organization's available balance (``amount``)
and/or the money held for generations in flight (``held``), under the organization's
row lock, in the same transaction as the cached balances, and with a
unique idempotency key, so a retried or redelivered operation can never move money twice.

    top-up      amount +X
    hold        amount -P   held +P     (before a generation is enqueued)
    capture     held -C                 (images delivered × unit price: spent)
    release     amount +R   held -R     (what was held and not delivered)
    adjustment  amount ±X               (staff corrections)

A charge follows one path: ``credits_authorize`` (limits, balance, caps) and
``credits_hold`` before the work is enqueued, ``credits_settle`` once when it ends. They
take plain values (an organization, a key id, a reference string such as a generation
id), so nothing here knows what is being bought.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import APIKey, CreditEntry, Membership, MonthlySpend, Organization
from accounts.money import format_credits
from imagehub.errors import RateLimited

logger = logging.getLogger(__name__)


class InsufficientQuota(RateLimited):
    type = "insufficient_quota"
    code = "insufficient_quota"


def lock_organization(organization_id: int) -> Organization:
    """The organization's row, locked until the end of the transaction. Every change of
    money takes this lock first, which serializes them per organization."""
    return Organization.objects.select_for_update().get(pk=organization_id)


def month_of(moment: dt.datetime | None = None) -> dt.date:
    moment = moment or timezone.now()
    return moment.astimezone(dt.UTC).date().replace(day=1)


# No savepoint of its own when called inside a transaction (every caller's is one, under
# the organization lock): an error here aborts the caller's transaction, which is what
# every caller wants; a repeated idempotency key is caught in its own savepoint below.
@transaction.atomic(savepoint=False)
def ledger_post(
    *,
    organization: Organization,
    kind: str,
    amount: int = 0,
    held: int = 0,
    idempotency_key: str,
    generation_id: str = "",
    memo: str = "",
    locked: bool = False,
) -> CreditEntry | None:
    """Append one entry and move the cached balances with it.

    `locked`: `organization` is the row this transaction locked (lock_organization), as
    moved since by ledger_post; else its row is locked (and read) here.

    Returns None when an entry with this idempotency key already exists: that movement
    happened before and must not happen again.
    """
    if not isinstance(amount, int) or not isinstance(held, int):
        raise TypeError("ledger amounts are integer micro-credits")
    balance, on_hold = organization.credit_balance, organization.credits_held
    if not locked:
        row = lock_organization(organization.pk)
        balance, on_hold = row.credit_balance, row.credits_held
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
    # Exact without reading the row again: it is locked by this transaction, so nothing
    # else moved it between the locked read and this update.
    organization.credit_balance = balance + amount
    organization.credits_held = on_hold + held
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
    """The month's rows of the organization (api_key null) and of the key, in one query."""
    mine = Q(api_key__isnull=True)
    if api_key_id is not None:
        mine |= Q(api_key_id=api_key_id)
    return MonthlySpend.objects.filter(mine, organization_id=organization_id, month=month)


def monthly_spend(
    *, organization_id: int, api_key_id: int | None, month: dt.date
) -> tuple[int, int]:
    """(organization, key) money committed in a month. Call under the organization lock
    for a value that cannot change before you act on it."""
    org_spent = key_spent = 0
    for row in _spend_rows(organization_id, api_key_id, month):
        if row.api_key_id is None:
            org_spent += row.amount
        else:
            key_spent += row.amount
    return org_spent, key_spent


def monthly_spend_add(
    *, organization_id: int, api_key_id: int | None, month: dt.date, amount: int
) -> None:
    """Move the month's committed spend; the caller holds the organization lock (which
    also makes the first movement of a month create its rows once). One UPDATE once the
    month's rows exist."""
    wanted = 1 if api_key_id is None else 2
    rows = _spend_rows(organization_id, api_key_id, month)
    if rows.update(amount=F("amount") + amount) == wanted:
        return
    have = {row.api_key_id for row in rows}
    for key_id in {None, api_key_id} - have:
        MonthlySpend.objects.create(
            organization_id=organization_id, api_key_id=key_id, month=month, amount=amount
        )


def _credits(micro: int) -> str:
    """Exact: 1500000 -> "1.5 credits (1500000 micro-credits)"; never rounded."""
    return f"{format_credits(micro)} ({micro} micro-credits)"


def _balance_too_low(organization: Organization, price: int) -> str:
    balance, held = organization.credit_balance, organization.credits_held
    if balance <= 0 and not held:
        said = (
            f"Your organization '{organization.name}' has no credits (balance 0), so every "
            "request is refused until credits are added."
        )
    else:
        said = f"Your organization '{organization.name}' has a balance of {_credits(balance)}"
        said += f" ({_credits(held)} more held for jobs in flight)." if held else "."
    return (
        f"{said} This request costs {_credits(price)}. The operator of this service adds "
        "credits in the admin (Organizations, action 'Add credits') or with "
        f"`manage.py add_credits {organization.slug} <micro-credits>`."
    )


def credits_authorize(
    *,
    organization: Organization,
    api_key: APIKey | None,
    price: int,
    active_jobs: Callable[[], int],
) -> None:
    """Refuse (429) a request that its limits or its money cannot cover.

    `active_jobs` counts the key's jobs in flight (called only when the key has a limit).
    The caller holds the organization lock (lock_organization), so the numbers read here
    cannot change before the hold is written.
    """
    if api_key is not None:
        limit = api_key.max_concurrent or organization.default_max_concurrent
        if limit and (active := active_jobs()) >= limit:
            raise RateLimited(
                f"This API key already has {active} generations in flight; its limit is "
                f"{limit} at a time. Retry when one finishes.",
                code="rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
    if organization.credit_balance < price:
        raise InsufficientQuota(_balance_too_low(organization, price))
    cap = organization.monthly_spend_cap
    key_cap = api_key.monthly_spend_cap if api_key else None
    if cap is None and key_cap is None:
        return  # no monthly cap to check: no need to read the month's spend
    org_spent, key_spent = monthly_spend(
        organization_id=organization.pk,
        api_key_id=api_key.pk if api_key else None,
        month=month_of(),
    )
    if cap is not None and org_spent + price > cap:
        raise InsufficientQuota(
            f"Your organization's monthly spend cap of {_credits(cap)} would be exceeded "
            f"({_credits(org_spent)} spent or held this month, this request costs "
            f"{_credits(price)}). It resets on the 1st (UTC)."
        )
    if key_cap is not None and key_spent + price > key_cap:
        raise InsufficientQuota(
            f"This API key's monthly spend cap of {_credits(key_cap)} would be exceeded "
            f"({_credits(key_spent)} spent or held this month, this request costs "
            f"{_credits(price)}). It resets on the 1st (UTC)."
        )


def credits_hold(
    *,
    organization: Organization,
    api_key_id: int | None,
    reference: str,
    price: int,
    month: dt.date,
) -> None:
    """Set the exact price aside before the work is enqueued. The caller holds the lock:
    `organization` is the row lock_organization returned in this transaction."""
    if price:
        ledger_post(
            organization=organization,
            kind=CreditEntry.Kind.HOLD,
            amount=-price,
            held=price,
            idempotency_key=f"gen:{reference}:hold",
            generation_id=reference,
            locked=True,
        )
        monthly_spend_add(
            organization_id=organization.pk, api_key_id=api_key_id, month=month, amount=price
        )
    _warn_if_low(organization)


def credits_settle(
    *,
    organization_id: int,
    api_key_id: int | None,
    reference: str,
    held: int,
    captured: int,
    month: dt.date,
) -> None:
    """Capture `captured` of the `held` amount and release the rest, once per reference
    (a repeat finds the idempotency keys taken and moves nothing)."""
    if not 0 <= captured <= held:
        raise ValueError(f"cannot capture {captured} of a hold of {held}")
    organization = lock_organization(organization_id)
    released = held - captured
    if captured:
        ledger_post(
            organization=organization,
            kind=CreditEntry.Kind.CAPTURE,
            held=-captured,
            idempotency_key=f"gen:{reference}:capture",
            generation_id=reference,
            locked=True,
        )
    if released:
        entry = ledger_post(
            organization=organization,
            kind=CreditEntry.Kind.RELEASE,
            amount=released,
            held=-released,
            idempotency_key=f"gen:{reference}:release",
            generation_id=reference,
            locked=True,
        )
        if entry is not None:
            monthly_spend_add(
                organization_id=organization_id,
                api_key_id=api_key_id,
                month=month,
                amount=-released,
            )


def _warn_if_low(organization: Organization) -> None:
    threshold = organization.low_balance_threshold
    month = month_of()
    if threshold is None or organization.credit_balance >= threshold:
        return
    if organization.low_balance_notified_month == month:
        return  # one email per period
    Organization.objects.filter(pk=organization.pk).update(low_balance_notified_month=month)
    owners = list(
        Membership.objects.filter(
            organization=organization, role=Membership.Role.OWNER
        ).values_list("user__email", flat=True)
    )
    balance = organization.credit_balance

    def send():
        send_mail(
            subject=f"[imagehub] {organization.name}: credit balance is low",
            message=(
                f"The credit balance of {organization.name} is {_credits(balance)}, below "
                f"your threshold of {_credits(threshold)}. Requests are refused once it "
                "cannot cover their price.\n\nThis notice is sent once a month."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=owners,
            fail_silently=True,
        )
        logger.info(
            "low-balance notice sent for org %s to %d owner(s)", organization.pk, len(owners)
        )

    if owners:
        transaction.on_commit(send)
