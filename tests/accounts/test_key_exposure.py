"""Secrets handled like secrets (issue 23, finding 8): no caching of a response that
carries one, redacted forms that give little away, no keys in URLs (refused, and not
logged), and a per-key IP allowlist."""

from __future__ import annotations

import logging

import pytest

from accounts.models import APIKey
from imagehub.server import RedactSecrets, redact_target
from tests.accounts.test_pages import browser, page_text
from tests.conftest import bearer_client


def test_responses_carrying_a_secret_are_not_cached(tenant):
    client = tenant.manage_client()
    created = client.post("/v1/keys", {"name": "ci"}, format="json")
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    key_id = created.json()["id"]
    rotated = client.post(f"/v1/keys/{key_id}/rotate", {"grace_seconds": 0}, format="json")
    assert rotated["Cache-Control"] == "no-store"
    first = client.put("/v1/webhook", {"url": ""}, format="json")
    assert first.status_code == 201 and first["Cache-Control"] == "no-store"
    assert client.post("/v1/webhook/rotate", {}, format="json")["Cache-Control"] == "no-store"
    page = browser(tenant.user).post("/keys/", {"name": "p", "scope": "generate"})
    assert page["Cache-Control"] == "no-store"


def test_redacted_secrets_show_the_prefix_and_last_four_only(tenant):
    from accounts.webhooks import endpoints

    _, secret = endpoints.webhook_endpoint_set(organization=tenant.org)
    shown = tenant.manage_client().get("/v1/webhook").json()["secret_redacted"]
    assert shown == f"whsec_…{secret[-4:]}"
    key = tenant.manage_client().get(f"/v1/keys/{tenant.key.pk}").json()
    # The key's lookup prefix (public: it finds the row) and its last four characters.
    assert key["redacted"] == f"{tenant.secret[:16]}…{tenant.secret[-4:]}"
    assert tenant.secret[16:-4] not in str(key)


@pytest.mark.parametrize("name", ["api_key", "key", "API_KEY", "access_token", "token"])
def test_a_key_in_the_query_string_is_refused(tenant, name):
    client = bearer_client(tenant.secret)
    refused = client.get(f"/v1/models?{name}={tenant.secret}")
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "api_key_in_url" and "Authorization header" in error["message"]
    assert tenant.secret not in refused.content.decode()
    # Without the header too: the URL alone never authenticates.
    from rest_framework.test import APIClient

    alone = APIClient().post(f"/v1/images/generations?{name}={tenant.secret}", {"prompt": "x"})
    assert alone.status_code == 401


def test_the_access_log_never_shows_a_key():
    target = "/v1/models?api_key=ihk_abcdefabcdef_SECRETSECRET&limit=2"
    assert redact_target(target) == "/v1/models?api_key=[redacted]&limit=2"
    assert "SECRET" not in redact_target("/v1/x?q=ihk_abcdefabcdef_SECRET")
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", target, "1.1", 401), None,
    )  # fmt: skip
    RedactSecrets().filter(record)
    assert "SECRET" not in record.getMessage() and "limit=2" in record.getMessage()


def test_a_key_limited_to_networks_is_refused_elsewhere_naming_the_address(tenant):
    client = tenant.manage_client()
    made = client.post(
        "/v1/keys",
        {"name": "office", "allowed_ips": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]},
        format="json",
    )
    assert made.status_code == 201
    assert made.json()["allowed_ips"] == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    office = bearer_client(made.json()["secret"])
    assert office.get("/v1/credits", REMOTE_ADDR="203.0.113.40").status_code == 200
    assert office.get("/v1/credits", REMOTE_ADDR="2001:db8::5").status_code == 200
    refused = office.get("/v1/credits", REMOTE_ADDR="192.0.2.9")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ip_not_allowed"
    assert "192.0.2.9" in refused.json()["error"]["message"]

    bad = client.patch(f"/v1/keys/{made.json()['id']}", {"allowed_ips": ["nope"]}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "allowed_ips"
    cleared = client.patch(f"/v1/keys/{made.json()['id']}", {"allowed_ips": []}, format="json")
    assert cleared.json()["allowed_ips"] == []
    assert office.get("/v1/credits", REMOTE_ADDR="192.0.2.9").status_code == 200


def test_the_key_page_edits_the_allowlist(tenant):
    pages = browser(tenant.user)
    saved = pages.post(
        f"/keys/{tenant.key.pk}/",
        {"name": "test", "allowed_ips": "10.0.0.0/8, ::1\n192.0.2.1"},
        follow=True,
    )
    assert saved.status_code == 200
    assert APIKey.objects.get(pk=tenant.key.pk).allowed_ips == [
        "10.0.0.0/8",
        "::1/128",
        "192.0.2.1/32",
    ]
    wrong = pages.post(f"/keys/{tenant.key.pk}/", {"name": "test", "allowed_ips": "10.0.0.0/33"})
    assert wrong.status_code == 400 and "not an IP address or CIDR" in page_text(wrong)
