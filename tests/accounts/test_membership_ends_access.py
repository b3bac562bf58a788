"""Membership ends access (issue 23, finding 1): a removed, departed or demoted member's
keys stop at once, or go to the owner who chose to take them over; the audit log says
who did what to which keys."""

from __future__ import annotations

from html.parser import HTMLParser

from accounts.models import APIKey, AuditEntry, Membership
from tests.accounts.test_pages import browser, page_text
from tests.conftest import Tenant, bearer_client

Role = Membership.Role
PROMPT = {"model": "demo-sd", "prompt": "a red fox", "size": "64x64"}


def _membership(tenant, user) -> Membership:
    return Membership.objects.get(organization=tenant.org, user=user)


def test_a_removed_member_is_a_stranger_to_the_organization(tenant, other_tenant):
    member = tenant.member(Role.MEMBER)
    other_tenant.member(Role.MEMBER, email=member.email)  # they have another organization
    _, generate = tenant.new_key(member)
    manage_key, manage = tenant.new_key(member, scope=APIKey.Scope.MANAGE)
    assert bearer_client(generate).get("/v1/credits").status_code == 200

    owner = browser(tenant.user)
    confirm = page_text(owner.get(f"/members/{_membership(tenant, member).pk}/remove/"))
    assert manage_key.redacted in confirm and "Transfer them to me" in confirm
    owner.post(f"/members/{_membership(tenant, member).pk}/remove/", {"keys": "revoke"})

    # Their keys answer as revoked keys do, before anything is billed.
    for secret in (generate, manage):
        client = bearer_client(secret)
        assert client.get("/v1/credits").status_code == 401
        refused = client.post("/v1/images/generations", PROMPT, format="json")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "revoked_api_key"
    # Their session sees the organization they still belong to; the old one's ids are 404.
    pages = browser(member)
    assert pages.get(f"/keys/{tenant.key.pk}/").status_code == 404
    assert pages.get(f"/keys/{manage_key.pk}/").status_code == 404
    organization_page = page_text(pages.get("/organization/"))
    assert "<strong>globex</strong>" in organization_page and ">acme<" not in organization_page

    entry = AuditEntry.objects.get(organization=tenant.org)
    assert (entry.action, entry.actor_email, entry.subject_email) == (
        "member_removed",
        tenant.user.email,
        member.email,
    )
    assert {k["id"] for k in entry.keys_revoked} == set(
        APIKey.objects.filter(created_by=member).values_list("pk", flat=True)
    )
    log = page_text(owner.get("/organization/"))
    assert f"removed {member.email}" in log and manage_key.redacted in log


def test_the_owner_can_take_the_keys_over(tenant):
    member = tenant.member(Role.MEMBER)
    key, secret = tenant.new_key(member)
    owner = browser(tenant.user)
    owner.post(f"/members/{_membership(tenant, member).pk}/remove/", {"keys": "transfer"})
    key.refresh_from_db()
    assert key.created_by == tenant.user and key.revoked_at is None
    assert bearer_client(secret).get("/v1/credits").status_code == 200
    entry = AuditEntry.objects.get()
    assert entry.keys_transferred == [{"id": key.pk, "name": key.name, "redacted": key.redacted}]
    assert "transferred" in page_text(owner.get("/organization/"))


def test_an_admin_cannot_take_keys_over_and_leaving_revokes(tenant):
    admin = tenant.member(Role.ADMIN)
    member = tenant.member(Role.MEMBER)
    key, _ = tenant.new_key(member)
    response = browser(admin).post(
        f"/members/{_membership(tenant, member).pk}/remove/", {"keys": "transfer"}, follow=True
    )
    assert "Only an owner can take over" in page_text(response)
    assert Membership.objects.filter(user=member).exists()

    browser(member).post(f"/members/{_membership(tenant, member).pk}/remove/")
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEntry.objects.get().action == "member_left"


def test_demotion_ends_the_keys_made_with_the_higher_role(tenant):
    admin = tenant.member(Role.ADMIN)
    as_admin, admin_secret = tenant.new_key(admin, scope=APIKey.Scope.MANAGE)
    browser(tenant.user).post(f"/members/{_membership(tenant, admin).pk}/role/", {"role": "member"})
    as_admin.refresh_from_db()
    assert as_admin.revoked_at is not None
    assert bearer_client(admin_secret).get("/v1/keys").status_code == 401
    # A key they make now, as a member, stays when they are promoted and demoted again.
    as_member, _ = tenant.new_key(admin)
    assert as_member.created_with_role == "member"
    entry = AuditEntry.objects.get()
    assert entry.action == "member_demoted" and entry.detail == "admin to member"


def test_members_do_not_see_the_audit_log(tenant):
    member = tenant.member(Role.MEMBER)
    assert "Audit log" not in page_text(browser(member).get("/organization/"))
    assert "Audit log" in page_text(browser(tenant.user).get("/organization/"))


def test_keys_of_a_departed_member_made_before_the_release_are_revoked(db):
    """The data migration's rule, checked on the live function."""
    import importlib

    migration = importlib.import_module("accounts.migrations.0009_member_keys_end_with_membership")
    tenant = Tenant("oldco")
    member = tenant.member(Role.MEMBER)
    key, _ = tenant.new_key(member)
    Membership.objects.filter(user=member).delete()  # removed the old way
    from django.apps import apps

    migration.end_keys_of_former_members(apps, None)
    key.refresh_from_db()
    tenant.key.refresh_from_db()
    assert key.revoked_at is not None and tenant.key.revoked_at is None


class _Form(HTMLParser):
    """The fields of the admin's change form, as a browser would post them."""

    def __init__(self):
        super().__init__()
        self.fields: dict[str, str] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button"):
            if attrs.get("type") == "checkbox":
                if "checked" in attrs:
                    self.fields[name] = attrs.get("value", "on")
            else:
                self.fields[name] = attrs.get("value", "")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.fields[self._select] = attrs.get("value", "")

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def _admin_change(client, organization, change) -> None:
    url = f"/admin/accounts/organization/{organization.pk}/change/"
    form = _Form()
    form.feed(client.get(url).content.decode())
    data = dict(form.fields)
    change(data)
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]


def _inline_prefix(data: dict, membership: Membership) -> str:
    return next(
        key.removesuffix("-id")
        for key, value in data.items()
        if key.endswith("-id") and value == str(membership.pk)
    )


def test_staff_removing_a_member_in_the_admin_ends_their_keys(tenant, client, django_user_model):
    staff = django_user_model.objects.create_superuser(email="ops@example.com", password="x")
    member = tenant.member(Role.ADMIN)
    _, generate = tenant.new_key(member)
    demoted = tenant.member(Role.ADMIN, email="second@example.com")
    _, admin_made = tenant.new_key(demoted, scope=APIKey.Scope.MANAGE)
    client.force_login(staff)

    def remove_one_demote_other(data):
        data[_inline_prefix(data, _membership(tenant, member)) + "-DELETE"] = "on"
        data[_inline_prefix(data, _membership(tenant, demoted)) + "-role"] = Role.MEMBER

    _admin_change(client, tenant.org, remove_one_demote_other)

    assert not Membership.objects.filter(organization=tenant.org, user=member).exists()
    assert _membership(tenant, demoted).role == Role.MEMBER
    for secret in (generate, admin_made):  # made with a role they no longer have
        assert bearer_client(secret).get("/v1/credits").status_code == 401
    entries = {e.subject_email: e for e in AuditEntry.objects.filter(organization=tenant.org)}
    assert entries[member.email].action == "member_removed"
    assert entries[member.email].actor_email == staff.email
    assert entries[demoted.email].action == "member_demoted"
    assert bearer_client(tenant.secret).get("/v1/credits").status_code == 200


def test_the_admin_keeps_the_last_owner(tenant, client, django_user_model):
    staff = django_user_model.objects.create_superuser(email="ops@example.com", password="x")
    client.force_login(staff)
    owner = _membership(tenant, tenant.user)

    def remove_owner(data):
        data[_inline_prefix(data, owner) + "-DELETE"] = "on"

    _admin_change(client, tenant.org, remove_owner)
    assert Membership.objects.filter(pk=owner.pk, role=Role.OWNER).exists()
    assert bearer_client(tenant.secret).get("/v1/credits").status_code == 200
