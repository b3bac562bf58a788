"""The management REST API: keys and the organization, for every kind of caller."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from accounts.models import APIKey, Membership
from tests.conftest import bearer_client, session_client

pytestmark = pytest.mark.django_db

GENERATE_SCOPE_MESSAGE = (
    "this key has the 'generate' scope; the management API needs a 'manage' key"
)


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    return response.json()["error"]


def _create(client, **body) -> dict:
    response = client.post("/v1/keys", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- creating keys and the one-time secret ---------------------------------------------


def test_create_shows_the_secret_once_and_it_works(tenant, owner_session):
    created = _create(
        owner_session,
        name="ci",
        allowed_models=["demo-sd", "black-forest-labs/FLUX.1-schnell", "demo-sd"],
        limits={"rpm_limit": 60, "max_concurrent": 2, "monthly_spend_cap": 5_000_000},
        expires_in_days=30,
    )
    secret = created["secret"]
    assert secret.startswith("ihk_") and created["status"] == "active"
    assert created["redacted"] == f"{secret[:16]}…{secret[-4:]}"
    assert created["prefix"] == secret[:16] and created["last_four"] == secret[-4:]
    assert created["allowed_models"] == ["demo-sd", "flux.1-schnell"]  # canonical, deduped
    assert created["limits"] == {
        "rpm_limit": 60,
        "max_concurrent": 2,
        "monthly_spend_cap": 5_000_000,
    }
    assert created["created_by"] == tenant.user.email and created["scope"] == "generate"
    expires = timezone.datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=29) < expires - timezone.now() <= timedelta(days=30)
    assert bearer_client(secret).get("/v1/models").status_code == 200

    listed = owner_session.get("/v1/keys")
    detail = owner_session.get(f"/v1/keys/{created['id']}")
    for response in (listed, detail):
        assert response.status_code == 200
        assert secret not in response.content.decode() and b'"secret"' not in response.content
    assert detail.json()["name"] == "ci"


def test_a_retried_create_with_an_idempotency_key_makes_one_key(tenant, owner_session):
    def create(name: str):
        return owner_session.post(
            "/v1/keys", {"name": name}, format="json", HTTP_IDEMPOTENCY_KEY="new-key-1"
        )

    first, again = create("deploy"), create("deploy")
    assert first.status_code == 201 and first.json()["secret"].startswith("ihk_")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and again.json()["secret"] is None
    assert APIKey.objects.filter(organization=tenant.org, name="deploy").count() == 1
    assert _error(create("another name"), 422)["param"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"scope": "admin"}, "scope"),
        ({"allowed_models": ["no-such-model"]}, "allowed_models"),
        ({"allowed_models": [""]}, "allowed_models.0"),
        ({"allowed_models": "demo-sd"}, "allowed_models"),
        ({"limits": {"rpm_limit": -1}}, "limits.rpm_limit"),
        ({"limits": {"monthly_spend_cap": "lots"}}, "limits.monthly_spend_cap"),
        ({"limits": {"burst": 3}}, "limits.burst"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_at": "2999-01-01T00:00:00Z", "expires_in_days": 3}, "expires_in_days"),
        ({"name": "x" * 101}, "name"),
        ({"secret": "ihk_mine"}, "secret"),
    ],
)
def test_invalid_input_is_400_naming_param(owner_session, body, param):
    error = _error(owner_session.post("/v1/keys", body, format="json"), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert APIKey.objects.count() == 1  # only the fixture's key


def test_list_is_newest_first_and_never_includes_secrets(tenant, owner_session):
    first = _create(owner_session, name="first")
    second = _create(owner_session, name="second")
    body = owner_session.get("/v1/keys").json()
    assert body["object"] == "list"
    assert [k["id"] for k in body["data"]] == [second["id"], first["id"], tenant.key.pk]
    assert all("secret" not in k for k in body["data"])


# --- who may do what -----------------------------------------------------------------------


def test_members_manage_only_their_own_keys(tenant):
    member = tenant.member(Membership.Role.MEMBER)
    as_member = session_client(member)
    own = _create(as_member, name="mine")
    assert [k["id"] for k in as_member.get("/v1/keys").json()["data"]] == [own["id"]]
    assert (
        as_member.patch(f"/v1/keys/{own['id']}", {"name": "renamed"}, format="json").status_code
        == 200
    )
    owners_key = f"/v1/keys/{tenant.key.pk}"
    for response in (
        as_member.get(owners_key),
        as_member.patch(owners_key, {"name": "x"}, format="json"),
        as_member.delete(owners_key),
        as_member.post(f"{owners_key}/rotate", {}, format="json"),
    ):
        assert "only manage the keys they created" in _error(response, 403)["message"]
    assert APIKey.objects.get(pk=tenant.key.pk).status == "active"


@pytest.mark.parametrize("role", [Membership.Role.ADMIN, Membership.Role.OWNER])
def test_owners_and_admins_manage_every_key(tenant, role):
    member = tenant.member(Membership.Role.MEMBER)
    members_key, _ = tenant.new_key(member, name="member's")
    client = session_client(tenant.member(role) if role == "admin" else tenant.user)
    ids = {k["id"] for k in client.get("/v1/keys").json()["data"]}
    assert {tenant.key.pk, members_key.pk} <= ids
    assert (
        client.patch(f"/v1/keys/{members_key.pk}", {"name": "audited"}, format="json").status_code
        == 200
    )
    revoked = client.delete(f"/v1/keys/{members_key.pk}").json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]


def test_another_tenants_key_is_404_never_403(tenant, other_tenant):
    url = f"/v1/keys/{other_tenant.key.pk}"
    for client in (session_client(tenant.user), tenant.manage_client()):
        for response in (
            client.get(url),
            client.patch(url, {"name": "stolen"}, format="json"),
            client.delete(url),
            client.post(f"{url}/rotate", {}, format="json"),
        ):
            assert _error(response, 404)["code"] == "key_not_found"
        assert other_tenant.key.pk not in {k["id"] for k in client.get("/v1/keys").json()["data"]}
    key = APIKey.objects.get(pk=other_tenant.key.pk)
    assert key.name == "test" and key.status == "active" and key.previous_prefix is None


def test_generate_key_is_refused_by_the_management_api(tenant):
    api = tenant.client()
    for response in (api.get("/v1/keys"), api.post("/v1/keys", {}, format="json")):
        error = _error(response, 403)
        assert error["message"] == GENERATE_SCOPE_MESSAGE
    assert _error(api.get("/v1/organization"), 403)["code"] == "insufficient_scope"


def test_manage_key_acts_with_its_creators_role(tenant):
    member = tenant.member(Membership.Role.MEMBER)
    as_member_key = tenant.manage_client(member)
    ids = [k["id"] for k in as_member_key.get("/v1/keys").json()["data"]]
    assert tenant.key.pk not in ids and len(ids) == 1  # just the manage key itself
    _error(as_member_key.delete(f"/v1/keys/{tenant.key.pk}"), 403)
    created = _create(as_member_key, name="via key")
    assert created["created_by"] == member.email
    assert as_member_key.get("/v1/organization").json()["role"] == "member"

    as_admin_key = tenant.manage_client(tenant.member(Membership.Role.ADMIN))
    assert as_admin_key.delete(f"/v1/keys/{tenant.key.pk}").json()["status"] == "revoked"


def test_manage_key_of_a_former_member_manages_nothing(tenant):
    admin = tenant.member(Membership.Role.ADMIN)
    client = tenant.manage_client(admin)
    Membership.objects.filter(user=admin).delete()
    assert _error(client.get("/v1/keys"), 403)["code"] == "no_membership"


def test_has_generate_scope_refuses_manage_keys(tenant):
    from rest_framework.test import APIRequestFactory, force_authenticate
    from rest_framework.views import APIView

    from accounts.api.authentication import HasGenerateScope

    class ImageLike(APIView):
        permission_classes = [HasGenerateScope]

        def post(self, request):
            from rest_framework.response import Response

            return Response({"ok": True})

    manage_key, _ = tenant.new_key(scope=APIKey.Scope.MANAGE)
    factory = APIRequestFactory()
    for key, status in ((tenant.key, 200), (manage_key, 403)):
        request = factory.post("/v1/images/generations", {}, format="json")
        force_authenticate(request, user=tenant.user, token=key)
        response = ImageLike.as_view()(request)
        assert response.status_code == status
    assert "the image API needs a 'generate' key" in response.data["error"]["message"]


def test_manage_key_cannot_generate_images(tenant):
    response = tenant.manage_client().post(
        "/v1/images/generations",
        {"prompt": "a cat", "size": "64x64"},
        format="json",
        HTTP_PREFER="respond-async",  # never wait for a worker
    )
    assert _error(response, 403)["code"] == "insufficient_scope"


def test_no_credentials_is_401(client):
    response = client.get("/v1/keys")
    assert _error(response, 401)["code"] == "missing_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_session_without_membership_is_403(db):
    from accounts.services import user_get_or_create

    loner, _ = user_get_or_create(email="loner@example.com")
    assert _error(session_client(loner).get("/v1/keys"), 403)["code"] == "no_membership"


def test_session_writes_need_csrf_but_bearer_keys_do_not(tenant):
    browser = session_client(tenant.user, enforce_csrf=True)
    assert browser.get("/v1/keys").status_code == 200
    assert "CSRF" in _error(browser.post("/v1/keys", {}, format="json"), 403)["message"]
    assert tenant.manage_client().post("/v1/keys", {}, format="json").status_code == 201


def test_session_acts_for_the_chosen_organization(tenant, other_tenant):
    tenant.member(Membership.Role.ADMIN, email=other_tenant.user.email)
    client = session_client(other_tenant.user)
    assert client.get("/v1/organization").json()["id"] == other_tenant.org.pk  # first one
    session = client.session
    session["org_id"] = tenant.org.pk
    session.save()
    org = client.get("/v1/organization").json()
    assert org["id"] == tenant.org.pk and org["role"] == "admin"
    assert tenant.key.pk in {k["id"] for k in client.get("/v1/keys").json()["data"]}
    session["org_id"] = 999_999  # not theirs: back to the first membership
    session.save()
    assert client.get("/v1/organization").json()["id"] == other_tenant.org.pk


# --- organization --------------------------------------------------------------------------


def test_organization_and_members(tenant):
    tenant.member(Membership.Role.ADMIN)
    member = tenant.member(Membership.Role.MEMBER)
    client = tenant.manage_client(member)
    org = client.get("/v1/organization").json()
    assert {k: org[k] for k in ("id", "name", "slug", "credit_balance", "role")} == {
        "id": tenant.org.pk,
        "name": "acme",
        "slug": "acme",
        "credit_balance": tenant.CREDITS,
        "role": "member",
    }
    members = client.get("/v1/organization/members").json()["data"]
    assert [(m["email"], m["role"]) for m in members] == [
        ("owner@acme.example", "owner"),
        ("admin@acme.example", "admin"),
        ("member@acme.example", "member"),
    ]
    assert all(m["joined"] for m in members)


# --- updating, revoking, rotating ----------------------------------------------------------


def test_patch_changes_only_what_it_is_given(tenant, owner_session):
    created = _create(owner_session, limits={"rpm_limit": 5, "max_concurrent": 1})
    url = f"/v1/keys/{created['id']}"
    body = owner_session.patch(
        url, {"limits": {"rpm_limit": 10}, "name": "renamed"}, format="json"
    ).json()
    assert body["limits"] == {"rpm_limit": 10, "max_concurrent": 1, "monthly_spend_cap": None}
    assert body["name"] == "renamed" and body["scope"] == "generate"
    future = (timezone.now() + timedelta(days=2)).isoformat()
    assert owner_session.patch(url, {"expires_at": future}, format="json").json()["expires_at"]
    assert (
        owner_session.patch(url, {"expires_at": None}, format="json").json()["expires_at"] is None
    )
    assert (
        owner_session.patch(url, {"allowed_models": []}, format="json").json()["allowed_models"]
        == []
    )
    assert _error(owner_session.patch(url, {"scope": "manage"}, format="json"), 400)["param"] == (
        "scope"
    )


def test_expired_key_shows_as_expired(tenant, owner_session):
    APIKey.objects.filter(pk=tenant.key.pk).update(expires_at=timezone.now() - timedelta(1))
    assert owner_session.get(f"/v1/keys/{tenant.key.pk}").json()["status"] == "expired"
    assert _error(tenant.client().get("/v1/models"), 401)["code"] == "expired_api_key"
    response = owner_session.post(f"/v1/keys/{tenant.key.pk}/rotate", {}, format="json")
    assert _error(response, 400)["code"] == "key_expired"


def test_rotation_keeps_the_old_secret_for_the_grace_period(tenant, owner_session):
    old = tenant.client()
    response = owner_session.post(
        f"/v1/keys/{tenant.key.pk}/rotate", {"grace_seconds": 3600}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    new_secret = body["secret"]
    assert body["id"] == tenant.key.pk and new_secret != tenant.secret
    assert body["prefix"] == new_secret[:16] and body["last_four"] == new_secret[-4:]
    grace = timezone.datetime.fromisoformat(body["previous_expires_at"]) - timezone.now()
    assert timedelta(minutes=59) < grace <= timedelta(hours=1)
    assert old.get("/v1/models").status_code == 200
    assert bearer_client(new_secret).get("/v1/models").status_code == 200
    assert new_secret not in owner_session.get(f"/v1/keys/{tenant.key.pk}").content.decode()

    APIKey.objects.filter(pk=tenant.key.pk).update(previous_expires_at=timezone.now())
    error = _error(old.get("/v1/models"), 401)
    assert error["code"] == "rotated_api_key" and "rotated" in error["message"]
    assert tenant.secret not in error["message"]
    assert bearer_client(new_secret).get("/v1/models").status_code == 200


def test_rotation_with_no_grace_stops_the_old_secret_at_once(tenant):
    client = tenant.manage_client()
    secret = client.post(
        f"/v1/keys/{tenant.key.pk}/rotate", {"grace_seconds": 0}, format="json"
    ).json()["secret"]
    assert _error(tenant.client().get("/v1/models"), 401)["code"] == "rotated_api_key"
    assert bearer_client(secret).get("/v1/models").status_code == 200


@pytest.mark.parametrize("grace", [-1, 30 * 86400 + 1, "soon"])
def test_rotation_grace_is_bounded(tenant, owner_session, grace):
    response = owner_session.post(
        f"/v1/keys/{tenant.key.pk}/rotate", {"grace_seconds": grace}, format="json"
    )
    assert _error(response, 400)["param"] == "grace_seconds"
    assert tenant.client().get("/v1/models").status_code == 200  # nothing rotated


def test_revoking_stops_both_secrets_at_once(tenant, owner_session):
    url = f"/v1/keys/{tenant.key.pk}"
    new_secret = owner_session.post(f"{url}/rotate", {}, format="json").json()["secret"]
    revoked = owner_session.delete(url)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    for secret in (tenant.secret, new_secret):
        assert _error(bearer_client(secret).get("/v1/models"), 401)["code"] == "revoked_api_key"
    again = owner_session.delete(url).json()
    assert again["revoked_at"] == revoked.json()["revoked_at"]  # idempotent
    assert _error(owner_session.post(f"{url}/rotate", {}, format="json"), 400)["code"] == (
        "key_revoked"
    )


# --- the secret is stored nowhere ---------------------------------------------------------------


def test_plaintext_secrets_are_stored_in_no_table_and_no_log(tenant, owner_session, caplog):
    caplog.set_level(logging.DEBUG)
    created = _create(owner_session, name="scan me", scope="manage")
    rotated = owner_session.post(f"/v1/keys/{created['id']}/rotate", {}, format="json").json()
    secrets = [created["secret"], rotated["secret"]]
    for secret in secrets:  # use them, so that every write on the auth path happens
        assert bearer_client(secret).get("/v1/keys").status_code == 200
    scanned = 0
    for model in apps.get_models(include_auto_created=True):
        for row in model._base_manager.values_list():
            scanned += 1
            text = " ".join(str(value) for value in row)
            for secret in secrets:
                assert secret not in text, f"{model._meta.label} stores a plaintext secret"
                assert secret[16:] not in text  # nor its random part
    assert scanned > 5
    assert not any(s in record.getMessage() for record in caplog.records for s in secrets)


def test_management_api_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    for path in ("/v1/keys", "/v1/keys/{id}", "/v1/keys/{id}/rotate", "/v1/organization"):
        assert path in schema["paths"], path
    assert schema["paths"]["/v1/keys/{id}/rotate"]["post"]["operationId"] == "rotate_api_key"
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
