"""Reads shared by the management API: who is calling, and what they may see."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from accounts.models import APIKey, AuditEntry, Membership, Organization, User
from imagehub.errors import NotFound, PermissionError_

SESSION_ORG_KEY = "org_id"
MANAGER_ROLES = (Membership.Role.OWNER, Membership.Role.ADMIN)


@dataclass(frozen=True)
class Caller:
    """The person behind a management request, in the organization they act for."""

    organization: Organization
    user: User
    role: str
    key: APIKey | None = None  # the manage key, when the request carried one

    @property
    def manages_all_keys(self) -> bool:
        return self.role in MANAGER_ROLES


def caller_for_request(request) -> Caller:
    """A manage key acts for its organization with its creator's role; a signed-in person
    acts for the organization chosen in the session, else their first membership."""
    key = getattr(request, "auth", None)  # DRF's; a plain Django request has none
    if isinstance(key, APIKey):
        membership = (
            Membership.objects.filter(organization=key.organization, user=key.created_by_id)
            .select_related("organization", "user")
            .first()
            if key.created_by_id
            else None
        )
        if membership is None:
            raise PermissionError_(
                "The person who created this key is no longer a member of its organization, "
                "so the key cannot manage anything.",
                code="no_membership",
            )
        return Caller(membership.organization, membership.user, membership.role, key)
    memberships = Membership.objects.filter(user=request.user).select_related("organization")
    chosen = str(request.session.get(SESSION_ORG_KEY, ""))
    membership = (chosen.isdigit() and memberships.filter(organization_id=chosen).first()) or (
        memberships.order_by("created_at", "pk").first()
    )
    if membership is None:
        raise PermissionError_(
            "Your account is not a member of any organization.", code="no_membership"
        )
    return Caller(membership.organization, request.user, membership.role)


def api_key_list(*, caller: Caller) -> QuerySet[APIKey]:
    """The keys the caller manages, newest first: every key of the organization for owners
    and admins, the keys they created for members."""
    keys = APIKey.objects.filter(organization=caller.organization).select_related("created_by")
    if not caller.manages_all_keys:
        keys = keys.filter(created_by=caller.user)
    return keys.order_by("-created_at", "-pk")


def api_key_get(*, caller: Caller, key_id: int) -> APIKey:
    """One key of the caller's organization. Another tenant's key is simply not found
    (404, never 403, so ids reveal nothing); a colleague's key is 403 for members."""
    key = (
        APIKey.objects.filter(organization=caller.organization, pk=key_id)
        .select_related("created_by")
        .first()
    )
    if key is None:
        raise NotFound(f"No API key with id {key_id}.", param="id", code="key_not_found")
    if not caller.manages_all_keys and key.created_by_id != caller.user.pk:
        raise PermissionError_(
            "Members can only manage the keys they created; ask an owner or admin.",
        )
    return key


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("created_at", "pk")
    )


def audit_entry_list(*, organization: Organization, limit: int = 50) -> QuerySet[AuditEntry]:
    """The organization's latest audit entries (removals, departures, demotions)."""
    return AuditEntry.objects.filter(organization=organization).order_by("-created_at", "-pk")[
        :limit
    ]


def user_exists(*, email: str) -> bool:
    return User.objects.filter(email__iexact=email).exists()
