"""Writes for people, organizations and API keys: sign-up, organizations, and the life of
a key (create, update, rotate, revoke, touch), and provisioning from the command line."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import keys, members, verification
from accounts.idempotency import Idempotency, idempotency_lookup, idempotency_record
from accounts.ledger import credits_top_up, lock_organization
from accounts.models import APIKey, Membership, Organization, User
from imagehub.errors import InvalidRequest, PermissionError_

LAST_USED_RESOLUTION = timedelta(minutes=1)


def user_get_or_create(*, email: str) -> tuple[User, bool]:
    """The account of `email`, created if missing: by the operator (create_api_key), who
    vouches for the address, so a new one is verified."""
    email = User.objects.normalize_email(email).lower()
    user = User.objects.filter(email=email).first()
    if user:
        return user, False
    return User.objects.create_user(
        email=email, password=None, email_verified_at=timezone.now()
    ), True


@transaction.atomic
def organization_create(*, name: str, owner: User | None = None) -> Organization:
    """A new organization, with `owner` as its owner. Made by the operator (no owner), it
    gets the starting credits; made by a person, only if their address is verified and
    has never had them (accounts/verification.py). A person owns at most
    IMAGEHUB_MAX_ORGS_PER_USER organizations."""
    if owner is not None:
        User.objects.select_for_update().filter(pk=owner.pk).first()  # one count at a time
        owned = Membership.objects.filter(user=owner, role=Membership.Role.OWNER).count()
        if owned >= settings.MAX_ORGS_PER_USER:
            raise InvalidRequest(
                f"You own {owned} organizations, the most this server allows "
                f"(IMAGEHUB_MAX_ORGS_PER_USER={settings.MAX_ORGS_PER_USER}).",
                param="name",
                code="too_many_organizations",
            )
    base = slugify(name)[:50] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    org = Organization.objects.create(name=name, slug=slug)
    if owner is not None:
        Membership.objects.create(organization=org, user=owner, role=Membership.Role.OWNER)
        verification.starting_credits_grant(user=owner, organization=org)
    elif settings.STARTING_CREDITS:
        credits_top_up(
            organization=org,
            amount=settings.STARTING_CREDITS,
            memo="starting credits (IMAGEHUB_STARTING_CREDITS)",
            idempotency_key=f"org:{org.pk}:starting-credits",
        )
    return org


@transaction.atomic
def user_sign_up(
    *, email: str, password: str, organization_name: str = "", invitation_token: str | None = None
) -> tuple[User, Organization]:
    """Create an account and return it with the organization the person starts in.

    With a pending invitation for this email address, the person joins the inviting
    organization and starts there, unless they also named an organization of their own,
    which is then created with them as its owner. Without one, their first organization is
    created: named `organization_name`, else after the email address.

    The address is verified at once when an invitation for it is used (the link came to
    it); otherwise the account waits for the verification link (accounts/verification.py).
    """
    invitation = members.invitation_find_pending(token=invitation_token)
    email = User.objects.normalize_email(email).strip().lower()
    invited = invitation is not None and email == invitation.email
    user = User.objects.create_user(
        email=email, password=password, email_verified_at=timezone.now() if invited else None
    )
    name = organization_name.strip()
    if invited:
        organization = members.invitation_accept(token=invitation_token, user=user).organization
        if name:
            organization = organization_create(name=name, owner=user)
    else:
        organization = organization_create(
            name=name or f"{user.email.split('@')[0]}'s organization", owner=user
        )
    return user, organization


def organization_for_user(*, user: User, name: str | None = None) -> tuple[Organization, bool]:
    """The organization a new key of `user` goes to: the one named `name` (created if
    missing), else the user's first, else a new one named after the email. The user
    becomes its owner if not yet a member. Returns (organization, created)."""
    organization = None
    if name:
        organization = Organization.objects.filter(name=name).first()
    else:
        membership = user.memberships.select_related("organization").order_by("pk").first()
        if membership:
            organization = membership.organization
        name = user.email.split("@")[0]
    created = organization is None
    if created:
        organization = organization_create(name=name)
    Membership.objects.get_or_create(
        organization=organization, user=user, defaults={"role": Membership.Role.OWNER}
    )
    return organization, created


MAX_ROTATION_GRACE_SECONDS = 30 * 24 * 3600
LIMIT_FIELDS = ("rpm_limit", "max_concurrent", "monthly_spend_cap")
# The largest limits the columns hold (rpm_limit and max_concurrent are integers,
# monthly_spend_cap a big integer), and the longest lifetime a new key may be given: the
# REST API and the pages validate against the same numbers.
MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1
MAX_EXPIRY_DAYS = 3650


def _check_limits(limits: dict[str, int | None]) -> None:
    for name, value in limits.items():
        if name not in LIMIT_FIELDS:
            raise InvalidRequest(f"Unknown limit '{name}'.", param=f"limits.{name}")
        if value is not None and (not isinstance(value, int) or value < 0):
            raise InvalidRequest(
                f"'{name}' must be a non-negative integer or null.", param=f"limits.{name}"
            )


MAX_ALLOWED_IPS = 100


def allowed_ips_check(values: list[str], *, param: str = "allowed_ips") -> list[str]:
    """CIDR networks (or single addresses), IPv4 or IPv6, normalised; InvalidRequest
    naming the first that is not one."""
    if len(values) > MAX_ALLOWED_IPS:
        raise InvalidRequest(f"At most {MAX_ALLOWED_IPS} networks.", param=param)
    networks: list[str] = []
    for value in values:
        try:
            network = str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise InvalidRequest(
                f"'{value}' is not an IP address or CIDR network (e.g. 203.0.113.0/24, "
                "2001:db8::/32).",
                param=param,
            ) from None
        if network not in networks:
            networks.append(network)
    return networks


def _role_in(organization: Organization, user: User | None) -> str:
    if user is None:
        return ""
    membership = Membership.objects.filter(organization=organization, user=user).first()
    return membership.role if membership else ""


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    created_by: User | None,
    name: str = "",
    scope: str = APIKey.Scope.GENERATE,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    limits: dict[str, int | None] | None = None,
    allowed_ips: list[str] | None = None,
    idempotency: Idempotency | None = None,
) -> tuple[APIKey, str | None]:
    """Create a key and return it with its secret, which is never retrievable again.

    With an `idempotency` key that created a key before, returns that key and None: its
    secret was shown once, to the first request, and is not stored."""
    limits = limits or {}
    _check_limits(limits)
    networks = allowed_ips_check(allowed_ips or [])
    if created_by is not None and created_by.email_verified_at is None:
        raise PermissionError_(
            f"Verify your email address ({created_by.email}) before creating keys: follow "
            "the link we emailed you, or ask for a new one on any page.",
            code="email_not_verified",
        )
    if idempotency is not None:
        lock_organization(organization.pk)  # serializes retries of one key
        made = idempotency_lookup(organization=organization, idempotency=idempotency)
        if made is not None:
            return APIKey.objects.get(pk=made.removeprefix("api_key:")), None
    secret, prefix = keys.new_secret()
    key = APIKey.objects.create(
        organization=organization,
        created_by=created_by,
        created_with_role=_role_in(organization, created_by),
        name=name,
        scope=scope,
        prefix=prefix,
        digest=keys.digest(secret),
        last_four=secret[-4:],
        expires_at=expires_at,
        allowed_models=list(allowed_models or []),
        allowed_ips=networks,
        **limits,
    )
    if idempotency is not None:
        idempotency_record(
            organization=organization, idempotency=idempotency, reference=f"api_key:{key.pk}"
        )
    return key, secret


_UNSET: Any = object()


@transaction.atomic
def api_key_update(
    *,
    key: APIKey,
    name: str | None = None,
    allowed_models: list[str] | None = None,
    limits: dict[str, int | None] | None = None,
    expires_at: datetime | None = _UNSET,
    allowed_ips: list[str] | None = None,
) -> APIKey:
    """Change the editable settings of a key; arguments left out stay as they are
    (``expires_at=None`` means "never expires")."""
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if allowed_models is not None:
        fields["allowed_models"] = list(allowed_models)
    if allowed_ips is not None:
        fields["allowed_ips"] = allowed_ips_check(allowed_ips)
    if limits:
        _check_limits(limits)
        fields.update(limits)
    if expires_at is not _UNSET:
        fields["expires_at"] = expires_at
    for attr, value in fields.items():
        setattr(key, attr, value)
    if fields:
        key.save(update_fields=list(fields))
    return key


@transaction.atomic
def api_key_rotate(*, key: APIKey, grace_seconds: int = 86400) -> tuple[APIKey, str]:
    """Issue a new secret for the same key. The old secret keeps working for
    ``grace_seconds`` (0 = stops at once); a secret from an earlier rotation that was
    still in its grace period stops now."""
    if not 0 <= grace_seconds <= MAX_ROTATION_GRACE_SECONDS:
        raise InvalidRequest(
            f"grace_seconds must be between 0 and {MAX_ROTATION_GRACE_SECONDS} (30 days).",
            param="grace_seconds",
        )
    locked = APIKey.objects.select_for_update().get(pk=key.pk)
    if locked.status != "active":
        raise InvalidRequest(
            f"This key is {locked.status} and cannot be rotated; create a new key.",
            code=f"key_{locked.status}",
        )
    secret, prefix = keys.new_secret()
    locked.previous_prefix = locked.prefix
    locked.previous_digest = locked.digest
    locked.previous_expires_at = timezone.now() + timedelta(seconds=grace_seconds)
    locked.prefix = prefix
    locked.digest = keys.digest(secret)
    locked.last_four = secret[-4:]
    locked.save(
        update_fields=[
            "previous_prefix",
            "previous_digest",
            "previous_expires_at",
            "prefix",
            "digest",
            "last_four",
        ]
    )
    return locked, secret


def api_key_revoke(*, key: APIKey) -> APIKey:
    """Revoke a key at once, for its current and any previous secret. Idempotent."""
    APIKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    return key


def api_key_touch(*, key: APIKey) -> None:
    """Record use, writing at most once a minute per key rather than on every request."""
    now = timezone.now()
    if key.last_used_at and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    APIKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


@dataclass(frozen=True)
class ProvisionedKey:
    """What api_key_provision made, and what it found already there."""

    user: User
    user_created: bool
    organization: Organization
    organization_created: bool
    key: APIKey
    secret: str


@transaction.atomic
def api_key_provision(
    *,
    email: str,
    organization_name: str | None = None,
    credits: int = 0,
    name: str = "cli",
    scope: str = APIKey.Scope.GENERATE,
) -> ProvisionedKey:
    """A new key for `email` in the organization `organization_name` (see
    organization_for_user), creating the user, the organization and the membership if
    they are missing; the organization is first topped up by `credits` micro-credits."""
    user, user_created = user_get_or_create(email=email)
    if user.email_verified_at is None:  # the operator vouches for the address
        user.email_verified_at = timezone.now()
        user.save(update_fields=["email_verified_at"])
    organization, organization_created = organization_for_user(user=user, name=organization_name)
    if credits:
        credits_top_up(organization=organization, amount=credits, memo="create_api_key")
    key, secret = api_key_create(organization=organization, created_by=user, name=name, scope=scope)
    return ProvisionedKey(user, user_created, organization, organization_created, key, secret)
