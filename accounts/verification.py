"""Email verification, and the starting credits it unlocks.

A sign-up sends a link with a signed token (Django's signing, salted, expiring after
VERIFICATION_MAX_AGE) naming the account and its address: nothing is stored. Until the
link is followed the person can sign in and look around, but cannot create keys and
their organizations get no starting credits. Following it marks the address verified
and grants IMAGEHUB_STARTING_CREDITS to the first organization they own: once per
address, ever (the ledger's unique idempotency key is the address's digest), however
many organizations or accounts are made with it.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.ledger import credits_top_up
from accounts.models import Membership, Organization, User
from imagehub.errors import InvalidRequest, NotFound

SALT = "imagehub.accounts.verify-email"
VERIFICATION_MAX_AGE = timedelta(days=3)


def verification_token(user: User) -> str:
    return signing.dumps({"u": user.pk, "e": user.email}, salt=SALT, compress=True)


def verification_send(*, user: User, verify_url: str) -> None:
    """Email the verification link (``verify_url`` is a format string taking the token),
    once the transaction commits."""
    link = verify_url.format(token=verification_token(user))
    days = VERIFICATION_MAX_AGE.days
    transaction.on_commit(
        lambda: send_mail(
            subject="Verify your email address on imagehub",
            message=(
                "Follow this link to verify your email address; then you can create API "
                f"keys, and your organization gets its starting credits (the link works for "
                f"{days} days):\n{link}\n\n"
                "If you did not sign up for imagehub, ignore this email."
            ),
            from_email=None,
            recipient_list=[user.email],
        )
    )


def signup_known_address_notify(*, email: str, login_url: str, reset_url: str) -> None:
    """A sign-up for an address that has an account: tell its owner, not the visitor
    (the page answers as for a new address)."""
    transaction.on_commit(
        lambda: send_mail(
            subject="Someone tried to sign up on imagehub with your address",
            message=(
                "Someone (perhaps you) tried to create an imagehub account with this email "
                "address, which already has one. Nothing was changed.\n\n"
                f"Sign in: {login_url}\nForgot your password? {reset_url}\n\n"
                "If it was not you, you can ignore this email."
            ),
            from_email=None,
            recipient_list=[email],
        )
    )


def starting_credits_grant(*, user: User, organization: Organization) -> None:
    """IMAGEHUB_STARTING_CREDITS to `organization`, if `user` has a verified address that
    has never had them."""
    if not settings.STARTING_CREDITS or user.email_verified_at is None:
        return
    address = hashlib.sha256(user.email.casefold().encode()).hexdigest()[:40]
    credits_top_up(
        organization=organization,
        amount=settings.STARTING_CREDITS,
        memo=f"starting credits of {user.email} (IMAGEHUB_STARTING_CREDITS)",
        idempotency_key=f"starting-credits:{address}",
    )


@transaction.atomic
def user_verify(*, token: str) -> User:
    """Mark the address of the token verified (again: harmless) and grant the starting
    credits to the first organization its account owns."""
    try:
        data = signing.loads(token, salt=SALT, max_age=VERIFICATION_MAX_AGE.total_seconds())
    except signing.SignatureExpired:
        raise InvalidRequest(
            "This verification link has expired; sign in and ask for a new one.",
            code="verification_expired",
        ) from None
    except signing.BadSignature:
        raise NotFound(
            "This verification link is not valid.", code="verification_invalid"
        ) from None
    user = User.objects.select_for_update().filter(pk=data.get("u"), email=data.get("e")).first()
    if user is None:
        raise NotFound("This verification link is not valid.", code="verification_invalid")
    if user.email_verified_at is None:
        user.email_verified_at = timezone.now()
        user.save(update_fields=["email_verified_at"])
        owned = (
            Membership.objects.filter(user=user, role=Membership.Role.OWNER)
            .select_related("organization")
            .order_by("created_at", "pk")
            .first()
        )
        if owned is not None:
            starting_credits_grant(user=user, organization=owned.organization)
    return user
