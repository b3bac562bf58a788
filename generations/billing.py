"""Money around a generation: authorize and hold before it is enqueued, settle once when
it finishes. Everything here runs under the organization's row lock (accounts.ledger),
so concurrent requests cannot overspend a balance or a cap, whatever their number.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.dashboards import latency_bucket
from accounts.ledger import (
    ledger_post,
    lock_organization,
    month_of,
    monthly_spend,
    monthly_spend_add,
)
from accounts.models import APIKey, CreditEntry, Membership, Organization, UsageRollup
from generations.models import Generation
from imagehub.errors import RateLimited

logger = logging.getLogger("generations.billing")

ACTIVE = (Generation.Status.QUEUED, Generation.Status.RUNNING)


class InsufficientQuota(RateLimited):
    type = "insufficient_quota"
    code = "insufficient_quota"


def _credits(micro: int) -> str:
    return f"{micro / 1_000_000:,.6f} credits ({micro} micro-credits)"


def authorize(*, organization: Organization, api_key: APIKey | None, price: int) -> None:
    """Refuse (429) a request that its limits or its money cannot cover.

    The caller holds the organization lock (accounts.ledger.lock_organization), so the
    numbers read here cannot change before the hold is written.
    """
    if api_key is not None:
        limit = api_key.max_concurrent or organization.default_max_concurrent
        if limit:
            active = Generation.objects.filter(api_key=api_key, status__in=ACTIVE).count()
            if active >= limit:
                raise RateLimited(
                    f"This API key already has {active} generations in flight; its limit is "
                    f"{limit} at a time. Retry when one finishes.",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": "1"},
                )
    if organization.credit_balance < price:
        raise InsufficientQuota(
            f"Your organization's balance is {_credits(organization.credit_balance)}; this "
            f"request costs {_credits(price)}. Add credits to continue."
        )
    month = month_of()
    org_spent, key_spent = monthly_spend(
        organization_id=organization.pk, api_key_id=api_key.pk if api_key else None, month=month
    )
    cap = organization.monthly_spend_cap
    if cap is not None and org_spent + price > cap:
        raise InsufficientQuota(
            f"Your organization's monthly spend cap of {_credits(cap)} would be exceeded "
            f"({_credits(org_spent)} spent or held this month, this request costs "
            f"{_credits(price)}). It resets on the 1st (UTC)."
        )
    key_cap = api_key.monthly_spend_cap if api_key else None
    if key_cap is not None and key_spent + price > key_cap:
        raise InsufficientQuota(
            f"This API key's monthly spend cap of {_credits(key_cap)} would be exceeded "
            f"({_credits(key_spent)} spent or held this month, this request costs "
            f"{_credits(price)}). It resets on the 1st (UTC)."
        )


def hold(*, generation: Generation, organization: Organization) -> None:
    """Set the exact price aside before the job is enqueued (caller holds the lock)."""
    if generation.price:
        ledger_post(
            organization=organization,
            kind=CreditEntry.Kind.HOLD,
            amount=-generation.price,
            held=generation.price,
            idempotency_key=f"gen:{generation.id}:hold",
            generation_id=generation.id,
        )
        monthly_spend_add(
            organization_id=organization.pk,
            api_key_id=generation.api_key_id,
            month=month_of(generation.created_at),
            amount=generation.price,
        )
    _warn_if_low(organization)


def settle(*, generation: Generation, delivered: int) -> None:
    """Capture delivered images, release the rest, record usage. Called exactly once
    per generation, in the transaction that moved it to a final status."""
    organization = lock_organization(generation.organization_id)
    captured = min(generation.price, generation.unit_price * delivered)
    released = generation.price - captured
    if captured:
        ledger_post(
            organization=organization,
            kind=CreditEntry.Kind.CAPTURE,
            held=-captured,
            idempotency_key=f"gen:{generation.id}:capture",
            generation_id=generation.id,
        )
    if released:
        ledger_post(
            organization=organization,
            kind=CreditEntry.Kind.RELEASE,
            amount=released,
            held=-released,
            idempotency_key=f"gen:{generation.id}:release",
            generation_id=generation.id,
        )
        monthly_spend_add(
            organization_id=organization.pk,
            api_key_id=generation.api_key_id,
            month=month_of(generation.created_at),
            amount=-released,
        )
    Generation.objects.filter(pk=generation.pk).update(charged=captured)
    generation.charged = captured
    _roll_up(generation, delivered=delivered, captured=captured)


def _roll_up(generation: Generation, *, delivered: int, captured: int) -> None:
    hour = generation.created_at.replace(minute=0, second=0, microsecond=0)
    row, _ = UsageRollup.objects.get_or_create(
        organization_id=generation.organization_id,
        hour=hour,
        model=generation.model,
        api_key_id=generation.api_key_id,
        user_id=generation.user_id,
    )
    succeeded = generation.status == Generation.Status.SUCCEEDED
    finished = generation.finished_at or timezone.now()
    latency_ms = int((finished - generation.created_at).total_seconds() * 1000)
    # Read-modify-write is safe: the organization lock serializes its rollup rows.
    histogram = dict(row.latency_histogram)
    bucket = latency_bucket(latency_ms)
    histogram[bucket] = histogram.get(bucket, 0) + 1
    UsageRollup.objects.filter(pk=row.pk).update(
        requests=F("requests") + 1,
        succeeded=F("succeeded") + int(succeeded),
        failed=F("failed") + int(not succeeded),
        images=F("images") + delivered,
        credits=F("credits") + captured,
        input_tokens=F("input_tokens")
        + generation.input_text_tokens
        + generation.input_image_tokens,
        output_tokens=F("output_tokens") + (generation.output_tokens if succeeded else 0),
        latency_ms_total=F("latency_ms_total") + latency_ms,
        latency_histogram=histogram,
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
