"""The web pages: sign-up and sign-in, keys, members, organization, and their guards."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from accounts.models import APIKey, Invitation, Membership, Organization, User
from accounts.selectors import SESSION_ORG_KEY
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"
Role = Membership.Role


def browser(user=None, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def page_text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- sign-up, sign-in, sign-out, password reset ---------------------------------------------


@pytest.mark.parametrize("url", ["/keys/", "/keys/1/", "/members/", "/organization/", "/"])
def test_pages_require_login(client, url):
    response = client.get(url, follow=True)
    assert response.redirect_chain[-1][0].startswith("/login/")
    assert b"Sign in" in response.content


def test_signup_creates_user_and_first_organization(client):
    response = client.post(
        "/signup/",
        {
            "email": "Ada@Example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "organization": "Analytical Engines",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/signup/sent/"
    user = User.objects.get(email="ada@example.com")
    org = Organization.objects.get(name="Analytical Engines")
    assert Membership.objects.get(user=user, organization=org).role == Role.OWNER
    # Signed in by the person, then in the organization they made.
    assert client.post("/login/", {"username": "ada@example.com", "password": PASSWORD})
    assert "Analytical Engines" in page_text(client.get("/organization/"))


def test_signup_refuses_a_weak_password_and_never_says_an_address_is_taken(client, tenant):
    response = client.post(
        "/signup/",
        {"email": tenant.user.email, "password1": "short", "password2": "short"},
    )
    text = page_text(response)
    assert response.status_code == 200
    assert "already exists" not in text and "too short" in text


def test_login_logout_and_session_cookie_flags(client, tenant):
    tenant.user.set_password(PASSWORD)
    tenant.user.save()
    response = client.post("/login/", {"username": "OWNER@acme.example", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/keys/"
    assert client.cookies["sessionid"]["httponly"]
    assert client.get("/keys/").status_code == 200
    assert client.get("/logout/").status_code == 405  # only POST signs out
    client.post("/logout/")
    assert client.get("/keys/").status_code == 302


def test_password_reset_by_email(client, tenant):
    tenant.user.set_password("an old password 1")
    tenant.user.save()
    response = client.post("/password-reset/", {"email": tenant.user.email}, follow=True)
    assert "Check your email" in page_text(response)
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    form_url = client.get(link, follow=True).redirect_chain[-1][0]
    response = client.post(
        form_url, {"new_password1": PASSWORD, "new_password2": PASSWORD}, follow=True
    )
    assert "Password changed" in page_text(response)
    tenant.user.refresh_from_db()
    assert tenant.user.check_password(PASSWORD)


def test_csrf_is_enforced_on_forms(tenant):
    client = browser(tenant.user, enforce_csrf_checks=True)
    response = client.post("/keys/", {"name": "no token", "scope": "generate"})
    assert response.status_code == 403
    assert not APIKey.objects.filter(name="no token").exists()
    page = client.get("/keys/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page_text(page)).group(1)
    response = client.post(
        "/keys/", {"name": "with token", "scope": "generate", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200
    assert APIKey.objects.filter(name="with token").exists()


# --- keys -----------------------------------------------------------------------------------


def test_create_key_reveals_the_secret_once(tenant):
    client = browser(tenant.user)
    response = client.post(
        "/keys/",
        {
            "name": "ci",
            "scope": "generate",
            "expires_in_days": "30",
            "allowed_models": ["demo-sd"],
            "rpm_limit": "60",
            "max_concurrent": "",
            "monthly_spend_cap": "5000000",
        },
    )
    secret = re.search(r'id="secret"[^>]*value="(ihk_[^"]+)"', page_text(response)).group(1)
    assert response["Cache-Control"] == "no-store"
    key = APIKey.objects.get(name="ci")
    assert key.allowed_models == ["demo-sd"] and key.rpm_limit == 60
    assert key.max_concurrent is None and key.monthly_spend_cap == 5_000_000
    assert key.expires_at is not None and key.created_by == tenant.user
    assert bearer_client(secret).get("/v1/models").status_code == 200
    listing = client.get("/keys/")
    assert secret not in listing.content.decode()
    assert key.redacted in listing.content.decode()


def test_edit_rotate_and_revoke_a_key(tenant):
    client = browser(tenant.user)
    key, old_secret = tenant.new_key(name="old name")
    client.post(
        f"/keys/{key.pk}/",
        {"name": "new name", "allowed_models": ["demo-sd"], "max_concurrent": "3"},
    )
    key.refresh_from_db()
    assert (key.name, key.allowed_models, key.max_concurrent) == ("new name", ["demo-sd"], 3)

    response = client.post(f"/keys/{key.pk}/rotate/", {"grace_seconds": "0"})
    new_secret = re.search(r'id="secret"[^>]*value="(ihk_[^"]+)"', page_text(response)).group(1)
    assert new_secret != old_secret
    assert bearer_client(old_secret).get("/v1/models").status_code == 401
    assert bearer_client(new_secret).get("/v1/models").status_code == 200

    client.post(f"/keys/{key.pk}/revoke/")
    assert bearer_client(new_secret).get("/v1/models").status_code == 401


def test_members_see_only_their_keys_and_cannot_touch_others(tenant):
    member = tenant.member(Role.MEMBER)
    owners_key, _ = tenant.new_key(name="owner's key")
    own_key, _ = tenant.new_key(member, name="member's key")
    client = browser(member)
    text = page_text(client.get("/keys/"))
    assert "member&#x27;s key" in text and "owner&#x27;s key" not in text
    response = client.post(f"/keys/{owners_key.pk}/revoke/", follow=True)
    assert "Members can only manage the keys they created" in page_text(response)
    owners_key.refresh_from_db()
    assert owners_key.revoked_at is None
    # An admin manages every key.
    admin_client = browser(tenant.member(Role.ADMIN))
    assert "member&#x27;s key" in page_text(admin_client.get("/keys/"))
    admin_client.post(f"/keys/{own_key.pk}/revoke/")
    own_key.refresh_from_db()
    assert own_key.revoked_at is not None


def test_another_tenants_key_and_member_are_404(tenant, other_tenant):
    client = browser(tenant.user)
    theirs = Membership.objects.get(organization=other_tenant.org)
    assert client.get(f"/keys/{other_tenant.key.pk}/").status_code == 404
    assert client.post(f"/keys/{other_tenant.key.pk}/revoke/").status_code == 404
    assert (
        client.post(f"/keys/{other_tenant.key.pk}/rotate/", {"grace_seconds": 0}).status_code == 404
    )
    assert client.post(f"/members/{theirs.pk}/role/", {"role": "member"}).status_code == 404
    assert client.post(f"/members/{theirs.pk}/remove/").status_code == 404
    other_tenant.key.refresh_from_db()
    assert other_tenant.key.revoked_at is None
    assert Membership.objects.filter(pk=theirs.pk, role=Role.OWNER).exists()


# --- organizations and members ------------------------------------------------------------


def test_switch_and_create_organizations(tenant, other_tenant):
    other_tenant.member(Role.MEMBER, email=tenant.user.email)
    client = browser(tenant.user)
    assert "acme" in page_text(client.get("/keys/"))
    client.post("/organization/switch/", {"org_id": other_tenant.org.pk, "next": "/members/"})
    assert client.session[SESSION_ORG_KEY] == other_tenant.org.pk
    text = page_text(client.get("/members/"))
    assert "People in globex" in text
    # Not a member: refused, session unchanged.
    third = Organization.objects.create(name="initech", slug="initech")
    client.post("/organization/switch/", {"org_id": third.pk})
    assert client.session[SESSION_ORG_KEY] == other_tenant.org.pk

    client.post("/organization/new/", {"name": "Side project"})
    org = Organization.objects.get(name="Side project")
    assert Membership.objects.get(organization=org, user=tenant.user).role == Role.OWNER
    assert client.session[SESSION_ORG_KEY] == org.pk


def test_rename_organization_is_for_owners_and_admins(tenant):
    member_client = browser(tenant.member(Role.MEMBER))
    member_client.post("/organization/", {"name": "Hijacked"})
    tenant.org.refresh_from_db()
    assert tenant.org.name == "acme"
    browser(tenant.member(Role.ADMIN)).post("/organization/", {"name": "Acme Corp"})
    tenant.org.refresh_from_db()
    assert tenant.org.name == "Acme Corp"


def test_invite_by_page_and_accept_after_signup(tenant, django_capture_on_commit_callbacks):
    owner = browser(tenant.user)
    with django_capture_on_commit_callbacks(execute=True):
        owner.post("/members/", {"email": "newbie@acme.example", "role": "admin"})
    link = re.search(r"http://testserver(/invite/\S+/)", mail.outbox[0].body).group(1)
    assert "newbie@acme.example" in page_text(owner.get("/members/"))  # pending

    newcomer = Client()
    page = newcomer.get(link)
    assert "Join acme" in page_text(page)
    token = link.split("/")[2]
    newcomer.post(
        "/signup/",
        {
            "email": "newbie@acme.example",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "invite": token,
        },
    )
    user = User.objects.get(email="newbie@acme.example")
    assert Membership.objects.get(organization=tenant.org, user=user).role == Role.ADMIN
    assert not Membership.objects.filter(user=user).exclude(organization=tenant.org).exists()
    assert Invitation.objects.get().accepted_by == user
    # The link works once.
    assert "Invitation accepted" in page_text(Client().get(link))


def test_accepting_while_signed_in_and_with_the_wrong_account(
    tenant, django_capture_on_commit_callbacks
):
    owner = browser(tenant.user)
    with django_capture_on_commit_callbacks(execute=True):
        owner.post("/members/", {"email": "x@acme.example", "role": "member"})
    link = re.search(r"http://testserver(/invite/\S+/)", mail.outbox[0].body).group(1)
    wrong = browser(User.objects.create_user(email="y@acme.example"))
    response = wrong.post(link, follow=True)
    assert "This invitation is for x@acme.example" in page_text(response)
    right_user = User.objects.create_user(email="x@acme.example")
    response = browser(right_user).post(link, follow=True)
    assert response.redirect_chain[-1][0] == "/keys/"
    assert Membership.objects.filter(organization=tenant.org, user=right_user).exists()


def test_member_page_permissions_and_last_owner_message(tenant):
    owner = browser(tenant.user)
    mine = Membership.objects.get(organization=tenant.org, user=tenant.user)
    response = owner.post(f"/members/{mine.pk}/role/", {"role": "member"}, follow=True)
    assert "is the last owner of acme" in page_text(response)

    admin_user = tenant.member(Role.ADMIN)
    admin = browser(admin_user)
    text = page_text(admin.get("/members/"))
    assert "Send invitation" in text
    assert '<option value="owner"' not in text  # admins cannot grant owner
    response = admin.post(f"/members/{mine.pk}/remove/", follow=True)
    assert "Only owners can remove an owner" in page_text(response)

    member = browser(tenant.member(Role.MEMBER))
    text = page_text(member.get("/members/"))
    assert "Send invitation" not in text and "Change</button>" not in text
    response = member.post("/members/", {"email": "z@acme.example", "role": "member"}, follow=True)
    assert "Only owners and admins can invite people" in page_text(response)
    assert not Invitation.objects.exists()


def test_person_without_organization_is_asked_to_create_one(db):
    loner = User.objects.create_user(email="loner@example.com")
    response = browser(loner).get("/keys/", follow=True)
    assert response.redirect_chain[-1][0] == "/organization/new/"
    assert "not a member of any organization" in page_text(response)


def test_static_files_and_header(tenant):
    client = browser(tenant.user)
    text = page_text(client.get("/keys/"))
    for label in ("Keys", "Members", "Organization", "Sign out", 'id="org-switcher"'):
        assert label in text
    css = client.get("/static/imagehub/app.css")
    assert css.status_code == 200
