"""Member rules: invitations, roles, removal, the last owner (accounts/members.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts import members
from accounts.models import Invitation, Membership
from accounts.selectors import Caller
from accounts.services import user_get_or_create, user_sign_up
from imagehub.errors import InvalidRequest, NotFound, PermissionError_

pytestmark = pytest.mark.django_db
Role = Membership.Role


def caller(tenant, user) -> Caller:
    membership = Membership.objects.get(organization=tenant.org, user=user)
    return Caller(tenant.org, user, membership.role)


def membership(tenant, user) -> Membership:
    return Membership.objects.select_related("user").get(organization=tenant.org, user=user)


# --- invitations -------------------------------------------------------------------------


def test_invitation_is_emailed_and_accepted_once(tenant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = members.invitation_create(
            caller=caller(tenant, tenant.user),
            email="New.Person@Example.com",
            role=Role.ADMIN,
            accept_url="https://hub.example/invite/{token}/",
        )
    assert invitation.email == "new.person@example.com"
    assert token not in invitation.digest and invitation.digest == members.invitation_digest(token)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.com"]
    assert f"https://hub.example/invite/{token}/" in mail.outbox[0].body

    person, _ = user_get_or_create(email="new.person@example.com")
    joined = members.invitation_accept(token=token, user=person)
    assert joined.organization == tenant.org and joined.role == Role.ADMIN
    with pytest.raises(InvalidRequest, match="accepted"):
        members.invitation_accept(token=token, user=person)


def test_signing_up_with_an_invitation_joins_it_and_without_one_makes_an_organization(tenant):
    _, token = members.invitation_create(
        caller=caller(tenant, tenant.user), email="ann@example.com", role=Role.ADMIN
    )
    # For another address the invitation does nothing: a first organization of one's own.
    bob, bobs = user_sign_up(email="bob@example.com", password="pw", invitation_token=token)
    assert bobs.name == "bob's organization" and bobs != tenant.org
    assert [m.organization for m in bob.memberships.all()] == [bobs]
    # For its address: a member of the inviting organization, starting there...
    ann, start = user_sign_up(email="ann@example.com", password="pw", invitation_token=token)
    assert start == tenant.org and membership(tenant, ann).role == Role.ADMIN
    assert ann.check_password("pw") and members.invitation_find_pending(token=token) is None
    # ...or, naming an organization of one's own too, starting in that one.
    _, token = members.invitation_create(caller=caller(tenant, tenant.user), email="cy@example.com")
    cy, start = user_sign_up(
        email="cy@example.com", password="pw", organization_name=" Cy Ltd ", invitation_token=token
    )
    assert start.name == "Cy Ltd" and start != tenant.org
    assert Membership.objects.get(organization=start, user=cy).role == Role.OWNER
    assert membership(tenant, cy).role == Role.MEMBER


def test_invitation_expires(tenant):
    _, token = members.invitation_create(caller=caller(tenant, tenant.user), email="late@x.example")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    person, _ = user_get_or_create(email="late@x.example")
    with pytest.raises(InvalidRequest, match="expired"):
        members.invitation_accept(token=token, user=person)
    assert not Membership.objects.filter(user=person).exists()


def test_invitation_for_another_email_is_refused(tenant):
    _, token = members.invitation_create(caller=caller(tenant, tenant.user), email="a@x.example")
    intruder, _ = user_get_or_create(email="b@x.example")
    with pytest.raises(PermissionError_, match="a@x.example"):
        members.invitation_accept(token=token, user=intruder)
    assert not Membership.objects.filter(user=intruder).exists()


def test_revoked_or_unknown_invitation_is_refused(tenant):
    owner = caller(tenant, tenant.user)
    invitation, token = members.invitation_create(caller=owner, email="r@x.example")
    members.invitation_revoke(caller=owner, invitation_id=invitation.pk)
    person, _ = user_get_or_create(email="r@x.example")
    with pytest.raises(InvalidRequest, match="revoked"):
        members.invitation_accept(token=token, user=person)
    with pytest.raises(NotFound):
        members.invitation_accept(token="not-a-token", user=person)


def test_only_managers_invite_and_only_owners_invite_owners(tenant):
    member = tenant.member(Role.MEMBER)
    admin = tenant.member(Role.ADMIN)
    with pytest.raises(PermissionError_):
        members.invitation_create(caller=caller(tenant, member), email="x@x.example")
    with pytest.raises(PermissionError_, match="owner"):
        members.invitation_create(caller=caller(tenant, admin), email="x@x.example", role="owner")
    members.invitation_create(caller=caller(tenant, admin), email="x@x.example", role="admin")
    with pytest.raises(InvalidRequest, match="already a member"):
        members.invitation_create(caller=caller(tenant, admin), email=member.email)


def test_another_tenants_invitation_cannot_be_revoked(tenant, other_tenant):
    invitation, _ = members.invitation_create(
        caller=caller(other_tenant, other_tenant.user), email="z@x.example"
    )
    with pytest.raises(NotFound):
        members.invitation_revoke(caller=caller(tenant, tenant.user), invitation_id=invitation.pk)


# --- roles and removal ---------------------------------------------------------------------


def test_last_owner_cannot_be_demoted_or_removed(tenant):
    owner = caller(tenant, tenant.user)
    mine = membership(tenant, tenant.user)
    with pytest.raises(InvalidRequest, match="last owner"):
        members.membership_change_role(caller=owner, membership=mine, role=Role.ADMIN)
    with pytest.raises(InvalidRequest, match="last owner"):
        members.membership_remove(caller=owner, membership=mine)
    assert membership(tenant, tenant.user).role == Role.OWNER

    second = tenant.member(Role.OWNER, email="second@acme.example")
    members.membership_change_role(caller=owner, membership=mine, role=Role.ADMIN)
    assert membership(tenant, tenant.user).role == Role.ADMIN
    # Now `second` is the last owner, and may not leave either.
    with pytest.raises(InvalidRequest, match="last owner"):
        members.membership_remove(
            caller=caller(tenant, second), membership=membership(tenant, second)
        )


def test_admins_cannot_touch_owners_or_make_owners(tenant):
    admin = caller(tenant, tenant.member(Role.ADMIN))
    member = membership(tenant, tenant.member(Role.MEMBER))
    owner = membership(tenant, tenant.user)
    with pytest.raises(PermissionError_):
        members.membership_change_role(caller=admin, membership=member, role=Role.OWNER)
    with pytest.raises(PermissionError_):
        members.membership_change_role(caller=admin, membership=owner, role=Role.MEMBER)
    with pytest.raises(PermissionError_):
        members.membership_remove(caller=admin, membership=owner)
    members.membership_change_role(caller=admin, membership=member, role=Role.ADMIN)
    assert membership(tenant, member.user).role == Role.ADMIN
    members.membership_remove(caller=admin, membership=membership(tenant, member.user))
    assert not Membership.objects.filter(organization=tenant.org, user=member.user).exists()


def test_owners_promote_to_owner_and_members_manage_nobody(tenant):
    owner = caller(tenant, tenant.user)
    colleague = tenant.member(Role.MEMBER, email="colleague@acme.example")
    plain = caller(tenant, tenant.member(Role.MEMBER))
    with pytest.raises(PermissionError_):
        members.membership_change_role(
            caller=plain, membership=membership(tenant, colleague), role=Role.ADMIN
        )
    with pytest.raises(PermissionError_):
        members.membership_remove(caller=plain, membership=membership(tenant, colleague))
    members.membership_change_role(
        caller=owner, membership=membership(tenant, colleague), role=Role.OWNER
    )
    assert membership(tenant, colleague).role == Role.OWNER
    # Anyone may leave.
    members.membership_remove(caller=plain, membership=membership(tenant, plain.user))
    assert not Membership.objects.filter(organization=tenant.org, user=plain.user).exists()


def test_another_tenants_member_is_not_found(tenant, other_tenant):
    theirs = membership(other_tenant, other_tenant.user)
    with pytest.raises(NotFound):
        members.membership_get(caller=caller(tenant, tenant.user), membership_id=theirs.pk)
