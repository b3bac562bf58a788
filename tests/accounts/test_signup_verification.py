"""No enumeration, no free-credit farming (issue 23, findings 5 and 6): sign-up and
password reset answer the same for every address; starting credits come once per
verified address; keys wait for verification; organizations per person are capped."""

from __future__ import annotations

import io
import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from accounts.models import APIKey, Organization, User
from tests.accounts.test_pages import PASSWORD, browser, page_text
from tests.conftest import bearer_client, session_client

CREDITS = 2_500_000


@pytest.fixture(autouse=True)
def _starting_credits(settings):
    cache.clear()
    settings.STARTING_CREDITS = CREDITS


def _sign_up(client, email, organization=""):
    return client.post(
        "/signup/",
        {
            "email": email,
            "password1": PASSWORD,
            "password2": PASSWORD,
            "organization": organization,
        },
    )


def _verify_link(message) -> str:
    return re.search(r"http://testserver(/verify-email/\S+/)", message.body).group(1)


def test_sign_up_answers_the_same_for_a_taken_address(tenant, django_capture_on_commit_callbacks):
    visitor, attacker = Client(), Client()
    with django_capture_on_commit_callbacks(execute=True):
        new = _sign_up(visitor, "ada@example.com")
        taken = _sign_up(attacker, tenant.user.email.upper())
    assert (new.status_code, new["Location"]) == (taken.status_code, taken["Location"])
    assert new["Location"] == "/signup/sent/"
    new_page = page_text(visitor.get("/signup/sent/")).replace("ada@example.com", "@")
    taken_page = page_text(attacker.get("/signup/sent/")).replace(tenant.user.email, "@")
    assert "Check your email" in new_page and new_page == taken_page
    # The owner of the taken address hears of it; nothing of theirs changed.
    to_owner = next(m for m in mail.outbox if m.to == [tenant.user.email])
    assert "already has one" in to_owner.body
    tenant.user.refresh_from_db()
    assert not tenant.user.check_password(PASSWORD)
    assert User.objects.filter(email__iexact=tenant.user.email).count() == 1


def test_password_reset_answers_the_same_for_every_address(client, tenant):
    known = client.post("/password-reset/", {"email": tenant.user.email})
    unknown = client.post("/password-reset/", {"email": "nobody@example.com"})
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])


def test_credits_and_keys_wait_for_the_verification_link(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _sign_up(Client(), "ada@example.com", "Engines")
    user = User.objects.get(email="ada@example.com")
    org = Organization.objects.get(name="Engines")
    assert user.email_verified_at is None and org.credit_balance == 0

    pages = browser(user)
    assert "Verify your email address" in page_text(pages.get("/keys/"))
    refused = pages.post("/keys/", {"name": "k", "scope": "generate"}, follow=True)
    assert "Verify your email address (ada@example.com) before creating keys" in page_text(refused)
    api = session_client(user).post("/v1/keys", {"name": "k"}, format="json")
    assert api.status_code == 403 and api.json()["error"]["code"] == "email_not_verified"
    assert not APIKey.objects.exists()

    # The banner's button sends a new link; either link verifies.
    with django_capture_on_commit_callbacks(execute=True):
        pages.post("/verify-email/resend/", {"next": "/keys/"})
    assert len(mail.outbox) == 2
    page = pages.get(_verify_link(mail.outbox[-1]), follow=True)
    assert "Verified ada@example.com" in page_text(page)
    assert "Verify your email address" not in page_text(pages.get("/keys/"))
    org.refresh_from_db()
    assert org.credit_balance == CREDITS
    assert pages.post("/keys/", {"name": "k", "scope": "generate"}).status_code == 200
    assert APIKey.objects.filter(created_by=user).count() == 1
    # The older link again: nothing more.
    pages.get(_verify_link(mail.outbox[0]))
    org.refresh_from_db()
    assert org.credit_balance == CREDITS


def test_more_organizations_bring_no_more_credits_and_are_capped(
    db, settings, django_capture_on_commit_callbacks
):
    settings.MAX_ORGS_PER_USER = 3
    with django_capture_on_commit_callbacks(execute=True):
        _sign_up(Client(), "eve@example.com", "first")
    user = User.objects.get(email="eve@example.com")
    pages = browser(user)
    pages.get(_verify_link(mail.outbox[0]))
    for name in ("second", "third"):
        assert pages.post("/organization/new/", {"name": name}).status_code == 302
    refused = pages.post("/organization/new/", {"name": "fourth"})
    assert refused.status_code == 400 and "the most this server allows" in page_text(refused)
    balances = dict(Organization.objects.values_list("name", "credit_balance"))
    assert balances == {"first": CREDITS, "second": 0, "third": 0}


def test_bad_and_forged_links_verify_nothing(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _sign_up(Client(), "mal@example.com")
    link = _verify_link(mail.outbox[0])
    forged = link[:-3] + ("x" if link[-3] != "x" else "y") + link[-2:]
    page = Client().get(forged, follow=True)
    assert "not valid" in page_text(page)
    assert User.objects.get(email="mal@example.com").email_verified_at is None


def test_create_api_key_still_provisions_a_working_key(db):
    out = io.StringIO()
    call_command("create_api_key", "ops@example.com", "--credits", "1000", stdout=out)
    secret = out.getvalue().splitlines()[-1]
    assert User.objects.get(email="ops@example.com").email_verified_at is not None
    assert bearer_client(secret).get("/v1/credits").status_code == 200
