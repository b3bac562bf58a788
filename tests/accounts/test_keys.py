"""API keys: stored as digests, checked in constant time, created from the command line."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts import keys
from accounts.models import APIKey, CreditEntry, Organization

pytestmark = pytest.mark.django_db


def test_secret_is_never_stored(tenant):
    key = APIKey.objects.get(pk=tenant.key.pk)
    assert tenant.secret.startswith("ihk_") and len(tenant.secret) >= 4 + 12 + 1 + 43
    assert key.prefix == tenant.secret[:16] and key.last_four == tenant.secret[-4:]
    assert key.digest == keys.digest(tenant.secret) and tenant.secret not in key.digest
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        rows = cursor.fetchall()
    assert not any(tenant.secret in str(value) for row in rows for value in row)


def test_revoked_and_expired_keys_say_which(tenant):
    api = tenant.client()
    assert api.get("/v1/models").status_code == 200
    APIKey.objects.filter(pk=tenant.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api.get("/v1/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "expired_api_key"
    APIKey.objects.filter(pk=tenant.key.pk).update(expires_at=None, revoked_at=timezone.now())
    response = api.get("/v1/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "revoked_api_key"


def test_last_used_is_written_at_most_once_a_minute(tenant):
    api = tenant.client()
    api.get("/v1/models")
    first = APIKey.objects.get(pk=tenant.key.pk).last_used_at
    assert first is not None
    api.get("/v1/models")
    assert APIKey.objects.get(pk=tenant.key.pk).last_used_at == first


def test_create_api_key_command(capsys, client):
    call_command("create_api_key", "Ada@Example.com", "--org", "Analytical", "--credits", "5000")
    lines = capsys.readouterr().out.strip().splitlines()
    secret = lines[-1]
    assert secret.startswith("ihk_") and " " not in secret
    org = Organization.objects.get(name="Analytical")
    assert org.credit_balance == 5000
    assert CreditEntry.objects.get(organization=org).kind == "topup"
    assert org.memberships.get().user.email == "ada@example.com"
    response = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200
    # A second key for the same person reuses the user and the organization.
    call_command("create_api_key", "ada@example.com")
    assert Organization.objects.count() == 1 and APIKey.objects.count() == 2
