"""API keys: stored as digests, checked in constant time, created from the command line."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts import keys
from accounts.models import APIKey, CreditEntry, Organization
from accounts.services import api_key_revoke, api_key_rotate, api_key_update
from imagehub.errors import InvalidRequest
from tests.conftest import bearer_client

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


def _auth_code(secret: str) -> str | None:
    response = bearer_client(secret).get("/v1/models")
    return None if response.status_code == 200 else response.json()["error"]["code"]


def test_rotate_issues_a_new_secret_for_the_same_key(tenant):
    old_prefix = tenant.key.prefix
    key, secret = api_key_rotate(key=tenant.key, grace_seconds=600)
    assert key.pk == tenant.key.pk and secret != tenant.secret
    assert key.prefix == secret[:16] != old_prefix and key.last_four == secret[-4:]
    assert key.previous_prefix == old_prefix and key.previous_digest == keys.digest(tenant.secret)
    assert _auth_code(tenant.secret) is None and _auth_code(secret) is None
    # The grace period ends: the old secret is refused and told why; the new one works.
    APIKey.objects.filter(pk=key.pk).update(previous_expires_at=timezone.now())
    assert _auth_code(tenant.secret) == "rotated_api_key"
    assert _auth_code(secret) is None


def test_rotate_with_zero_grace_and_rotating_twice(tenant):
    _, second = api_key_rotate(key=tenant.key, grace_seconds=0)
    assert _auth_code(tenant.secret) == "rotated_api_key" and _auth_code(second) is None
    _, third = api_key_rotate(key=tenant.key, grace_seconds=3600)
    assert _auth_code(second) is None and _auth_code(third) is None
    # Only the latest previous secret is remembered: the first one is now simply unknown.
    assert _auth_code(tenant.secret) == "invalid_api_key"


def test_revoke_stops_current_and_previous_secret(tenant):
    key, new = api_key_rotate(key=tenant.key, grace_seconds=3600)
    api_key_revoke(key=key)
    assert _auth_code(tenant.secret) == _auth_code(new) == "revoked_api_key"
    with pytest.raises(InvalidRequest) as exc:
        api_key_rotate(key=key)
    assert exc.value.code == "key_revoked"


def test_rotate_rejects_out_of_range_grace(tenant):
    for grace in (-1, 30 * 86400 + 1):
        with pytest.raises(InvalidRequest) as exc:
            api_key_rotate(key=tenant.key, grace_seconds=grace)
        assert exc.value.param == "grace_seconds"
    assert APIKey.objects.get(pk=tenant.key.pk).prefix == tenant.key.prefix


def test_limits_and_allowed_models_are_stored_and_validated(tenant):
    key, _ = tenant.new_key(
        allowed_models=["demo-sd"], limits={"rpm_limit": 0, "max_concurrent": 3}
    )
    key.refresh_from_db()
    assert key.rpm_limit == 0 and key.max_concurrent == 3 and key.monthly_spend_cap is None
    assert key.allows_model("demo-sd") and not key.allows_model("demo-flux")
    assert tenant.key.allows_model("demo-flux")  # empty list = every model
    for limits in ({"rpm_limit": -1}, {"monthly_spend_cap": 1.5}, {"burst": 1}):
        with pytest.raises(InvalidRequest):
            tenant.new_key(limits=limits)
    api_key_update(key=key, limits={"monthly_spend_cap": 10**12}, expires_at=None)
    key.refresh_from_db()
    assert key.monthly_spend_cap == 10**12 and key.rpm_limit == 0


def test_status_of_a_key(tenant):
    assert tenant.key.status == "active"
    tenant.key.expires_at = timezone.now() - timedelta(seconds=1)
    assert tenant.key.status == "expired" and not tenant.key.is_active
    tenant.key.revoked_at = timezone.now()
    assert tenant.key.status == "revoked"
