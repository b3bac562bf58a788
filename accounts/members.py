"""Writes for the people of an organization: invitations, roles, removal, renaming.

The rules, in one place:

- owners and admins invite, change roles and remove members; members do none of that
  (but anyone may leave an organization);
- admins cannot make anyone an owner, and cannot change or remove an owner; owners can;
- an organization always keeps at least one owner: removing or demoting the last owner
  is refused;
- membership ends access: removing a member, a member leaving, or demoting a member
  below the role they held when they created a key revokes every such key at once, or,
  when an owner removes or demotes someone and chooses so, transfers it to that owner;
  each of these is written to the organization's audit log (AuditEntry);
- an invitation is a one-time link that expires; only a digest of its token is stored,
  and only the person with the invited email address can accept it.

Errors are the project's API errors (PermissionError_ 403, InvalidRequest 400, NotFound
404), so that pages and the REST API report them the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import APIKey, AuditEntry, Invitation, Membership, Organization, User
from accounts.selectors import MANAGER_ROLES, Caller
from imagehub.errors import InvalidRequest, NotFound, PermissionError_

INVITATION_TTL = timedelta(days=7)
Role = Membership.Role
# Higher is more: a key made with a role above the creator's new one goes with the role.
ROLE_RANK = {Role.MEMBER: 0, Role.ADMIN: 1, Role.OWNER: 2}


def invitation_digest(token: str) -> str:
    key = settings.API_KEY_HMAC_SECRET.encode()
    return hmac.new(key, f"invitation:{token}".encode(), hashlib.sha256).hexdigest()


def _require_manager(caller: Caller, action: str) -> None:
    if caller.role not in MANAGER_ROLES:
        raise PermissionError_(f"Only owners and admins can {action}.")


def _require_may_grant(caller: Caller, role: str) -> None:
    if role not in Role.values:
        raise InvalidRequest(f"Unknown role '{role}'.", param="role")
    if role == Role.OWNER and caller.role != Role.OWNER:
        raise PermissionError_("Only owners can make someone an owner.")


def _owner_count_locked(organization: Organization) -> int:
    """The number of owners, with the organization row locked so that two concurrent
    demotions cannot both see "there is another owner"."""
    Organization.objects.select_for_update().filter(pk=organization.pk).first()
    return Membership.objects.filter(organization=organization, role=Role.OWNER).count()


def can_manage(caller: Caller, membership: Membership) -> bool:
    """Whether the caller may change this membership's role or remove it (page hint;
    the services below decide)."""
    if caller.role not in MANAGER_ROLES:
        return False
    return caller.role == Role.OWNER or membership.role != Role.OWNER


def membership_get(*, caller: Caller, membership_id: int) -> Membership:
    """A membership of the caller's organization; another tenant's is simply not found."""
    membership = (
        Membership.objects.filter(organization=caller.organization, pk=membership_id)
        .select_related("user")
        .first()
    )
    if membership is None:
        raise NotFound(f"No member with id {membership_id}.", code="member_not_found")
    return membership


def _key_row(key: APIKey) -> dict:
    return {"id": key.pk, "name": key.name, "redacted": key.redacted}


def _keys_end(*, caller: Caller, user: User, keys, transfer: bool) -> tuple[list[dict], list[dict]]:
    """Revoke the live keys in `keys` (created by `user`), or transfer them to the
    calling owner. Returns (revoked, transferred) as audit rows."""
    live = list(keys.filter(revoked_at__isnull=True).select_for_update().order_by("pk"))
    if not live:
        return [], []
    ids = [key.pk for key in live]
    if transfer:
        APIKey.objects.filter(pk__in=ids).update(
            created_by=caller.user, created_with_role=caller.role
        )
        return [], [_key_row(key) for key in live]
    APIKey.objects.filter(pk__in=ids).update(revoked_at=timezone.now())
    return [_key_row(key) for key in live], []


def _audit(
    *, caller: Caller, action: str, subject: User, detail: str, revoked, transferred
) -> AuditEntry:
    return AuditEntry.objects.create(
        organization=caller.organization,
        action=action,
        actor=caller.user,
        actor_email=caller.user.email,
        subject=subject,
        subject_email=subject.email,
        detail=detail,
        keys_revoked=revoked,
        keys_transferred=transferred,
    )


def _check_transfer(caller: Caller, membership: Membership, transfer: bool) -> None:
    if transfer and (caller.role != Role.OWNER or membership.user_id == caller.user.pk):
        raise PermissionError_("Only an owner can take over the keys of someone else.")


def member_keys(*, membership: Membership):
    """The live keys this member created in the organization (what a removal ends)."""
    return APIKey.objects.filter(
        organization_id=membership.organization_id,
        created_by_id=membership.user_id,
        revoked_at__isnull=True,
    ).order_by("-created_at", "-pk")


@transaction.atomic
def membership_change_role(
    *, caller: Caller, membership: Membership, role: str, transfer_keys: bool = False
) -> Membership:
    _require_manager(caller, "change roles")
    _require_may_grant(caller, role)
    _check_transfer(caller, membership, transfer_keys)
    if membership.role == Role.OWNER and caller.role != Role.OWNER:
        raise PermissionError_("Only owners can change an owner's role.")
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and _owner_count_locked(caller.organization) <= 1:
        raise InvalidRequest(
            f"{membership.user.email} is the last owner of {caller.organization.name}; "
            "make someone else an owner first.",
            code="last_owner",
        )
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    if ROLE_RANK[role] < ROLE_RANK[previous]:
        above = [r for r, rank in ROLE_RANK.items() if rank > ROLE_RANK[role]]
        revoked, transferred = _keys_end(
            caller=caller,
            user=membership.user,
            keys=member_keys(membership=membership).filter(created_with_role__in=above),
            transfer=transfer_keys,
        )
        _audit(
            caller=caller,
            action=AuditEntry.Action.DEMOTED,
            subject=membership.user,
            detail=f"{previous} to {role}",
            revoked=revoked,
            transferred=transferred,
        )
    return membership


@transaction.atomic
def membership_remove(
    *, caller: Caller, membership: Membership, transfer_keys: bool = False
) -> AuditEntry:
    """Remove a member (or leave): every key they created in the organization is revoked
    at once, or transferred to the calling owner with `transfer_keys`."""
    leaving = membership.user_id == caller.user.pk
    if not leaving:
        _require_manager(caller, "remove members")
        if membership.role == Role.OWNER and caller.role != Role.OWNER:
            raise PermissionError_("Only owners can remove an owner.")
    _check_transfer(caller, membership, transfer_keys)
    if membership.role == Role.OWNER and _owner_count_locked(caller.organization) <= 1:
        raise InvalidRequest(
            f"{membership.user.email} is the last owner of {caller.organization.name} and "
            "cannot be removed; make someone else an owner first.",
            code="last_owner",
        )
    revoked, transferred = _keys_end(
        caller=caller,
        user=membership.user,
        keys=member_keys(membership=membership),
        transfer=transfer_keys,
    )
    membership.delete()
    return _audit(
        caller=caller,
        action=AuditEntry.Action.LEFT if leaving else AuditEntry.Action.REMOVED,
        subject=membership.user,
        detail=f"was {membership.role}",
        revoked=revoked,
        transferred=transferred,
    )


@transaction.atomic
def invitation_create(
    *, caller: Caller, email: str, role: str = Role.MEMBER, accept_url: str | None = None
) -> tuple[Invitation, str]:
    """Invite ``email`` and return the invitation with its token (never stored). With
    ``accept_url`` (a format string taking the token), the link is emailed."""
    _require_manager(caller, "invite people")
    _require_may_grant(caller, role)
    email = User.objects.normalize_email(email).strip().lower()
    if Membership.objects.filter(organization=caller.organization, user__email=email).exists():
        raise InvalidRequest(f"{email} is already a member.", param="email", code="already_member")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=caller.organization,
        email=email,
        role=role,
        digest=invitation_digest(token),
        invited_by=caller.user,
        expires_at=timezone.now() + INVITATION_TTL,
    )
    if accept_url:
        link = accept_url.format(token=token)
        org = caller.organization.name
        transaction.on_commit(
            lambda: send_mail(
                subject=f"You are invited to {org} on imagehub",
                message=(
                    f"{caller.user.email} invited you to join {org} on imagehub as {role}.\n\n"
                    f"Accept the invitation (the link works once, for 7 days):\n{link}\n\n"
                    "If you do not have an account yet, sign up with this email address."
                ),
                from_email=None,
                recipient_list=[email],
            )
        )
    return invitation, token


def invitation_list_pending(*, organization: Organization):
    return Invitation.objects.filter(
        organization=organization,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).order_by("-created_at", "-pk")


def invitation_revoke(*, caller: Caller, invitation_id: int) -> Invitation:
    _require_manager(caller, "revoke invitations")
    invitation = Invitation.objects.filter(
        organization=caller.organization, pk=invitation_id
    ).first()
    if invitation is None:
        raise NotFound(f"No invitation with id {invitation_id}.", code="invitation_not_found")
    Invitation.objects.filter(pk=invitation.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    invitation.refresh_from_db()
    return invitation


def invitation_find(*, token: str) -> Invitation:
    """The invitation a token belongs to, whatever its status; NotFound otherwise."""
    invitation = (
        Invitation.objects.filter(digest=invitation_digest(token))
        .select_related("organization", "invited_by")
        .first()
    )
    if invitation is None:
        raise NotFound("This invitation link is not valid.", code="invitation_not_found")
    return invitation


def invitation_find_pending(*, token: str | None) -> Invitation | None:
    """The pending invitation a token belongs to; None for no token, an unknown one, or an
    invitation accepted, revoked or expired."""
    if not token:
        return None
    try:
        invitation = invitation_find(token=token)
    except NotFound:
        return None
    return invitation if invitation.status == "pending" else None


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Accept an invitation: once, before it expires, by the invited email address."""
    invitation = invitation_find(token=token)
    if invitation.status != "pending":
        raise InvalidRequest(
            f"This invitation is {invitation.status}; ask for a new one.",
            code=f"invitation_{invitation.status}",
        )
    if invitation.email.lower() != user.email.lower():
        raise PermissionError_(
            f"This invitation is for {invitation.email}; you are signed in as {user.email}.",
            code="invitation_wrong_email",
        )
    claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        accepted_at=timezone.now(), accepted_by=user
    )
    if not claimed:  # accepted concurrently
        raise InvalidRequest("This invitation is accepted; ask for a new one.")
    membership, _ = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    return membership


def organization_rename(*, caller: Caller, name: str) -> Organization:
    _require_manager(caller, "rename the organization")
    name = name.strip()
    if not name:
        raise InvalidRequest("The name cannot be empty.", param="name")
    org = caller.organization
    org.name = name[:200]
    org.save(update_fields=["name"])
    return org


def organization_set_moderation(*, caller: Caller, strict: bool) -> Organization:
    """An owner makes the organization stricter than the operator's policy asks (every
    request checked as `moderation: auto`), or back to the requests' own choice."""
    if caller.role != Role.OWNER:
        raise PermissionError_("Only owners can change the organization's moderation.")
    org = caller.organization
    org.moderation_strict = strict
    org.save(update_fields=["moderation_strict"])
    return org
