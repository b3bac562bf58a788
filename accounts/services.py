"""Writes for organizations, members and API keys."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import keys
from accounts.models import APIKey, Membership, Organization, User

LAST_USED_RESOLUTION = timedelta(minutes=1)


def user_get_or_create(*, email: str) -> tuple[User, bool]:
    email = User.objects.normalize_email(email).lower()
    user = User.objects.filter(email=email).first()
    if user:
        return user, False
    return User.objects.create_user(email=email, password=None), True


def organization_create(*, name: str, owner: User | None = None) -> Organization:
    base = slugify(name)[:50] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    org = Organization.objects.create(name=name, slug=slug)
    if owner is not None:
        Membership.objects.create(organization=org, user=owner, role=Membership.Role.OWNER)
    return org


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    created_by: User | None,
    name: str = "",
    scope: str = APIKey.Scope.GENERATE,
    expires_at=None,
) -> tuple[APIKey, str]:
    """Create a key and return it with its secret, which is never retrievable again."""
    secret, prefix = keys.new_secret()
    key = APIKey.objects.create(
        organization=organization,
        created_by=created_by,
        name=name,
        scope=scope,
        prefix=prefix,
        digest=keys.digest(secret),
        last_four=secret[-4:],
        expires_at=expires_at,
    )
    return key, secret


def api_key_touch(*, key: APIKey) -> None:
    """Record use, writing at most once a minute per key rather than on every request."""
    now = timezone.now()
    if key.last_used_at and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    APIKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now
