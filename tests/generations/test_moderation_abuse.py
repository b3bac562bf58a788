"""Abuse handling: blocks are recorded and purged after their retention; a key blocked too
often within an hour is suspended (403 key_suspended, owners emailed) until the operator
lifts it in the admin; the operator dashboard charts blocks; an owner makes the
organization stricter on the Organization page."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.models import APIKey, Membership, Organization, User
from generations.models import ModerationBlock
from imagehub.retention import purge_all

pytestmark = pytest.mark.django_db

URL = "/v1/images/generations"
TERMS = {"categories": {"violence": {"terms": ["gore"], "relaxed_by_low": True}}}
BLOCKED = {"prompt": "gore", "size": "64x64"}


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_too_many_blocks_in_an_hour_suspend_the_key(
    api, tenant, policy, settings, django_capture_on_commit_callbacks
):
    policy(TERMS)
    settings.MODERATION_SUSPEND_AFTER = 2
    mail.outbox.clear()
    for _ in range(2):
        assert api.post(URL, BLOCKED, format="json").status_code == 400
    assert APIKey.objects.get(pk=tenant.key.pk).suspended_at is None
    # The third block in the hour is one more than allowed: the key is suspended.
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(URL, BLOCKED, format="json").status_code == 400
    key = APIKey.objects.get(pk=tenant.key.pk)
    assert key.suspended_at is not None and key.status == "suspended"
    refused = api.post(URL, {"prompt": "a harmless lighthouse", "size": "64x64"}, format="json")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "key_suspended"
    assert "Only the operator of this server can lift the suspension" in error["message"]
    assert "3 requests blocked by the content policy within an hour" in error["message"]
    [email] = [m for m in mail.outbox if "suspended" in m.subject]
    assert email.to == [tenant.user.email] and key.redacted in email.body
    # Another key of the organization keeps working.
    _, other = tenant.new_key(name="other")
    client = api.__class__()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other}")
    assert client.get("/v1/models").status_code == 200


def test_blocks_of_an_earlier_hour_do_not_count(api, tenant, policy, settings):
    policy(TERMS)
    settings.MODERATION_SUSPEND_AFTER = 1
    assert api.post(URL, BLOCKED, format="json").status_code == 400
    ModerationBlock.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    assert api.post(URL, BLOCKED, format="json").status_code == 400
    assert APIKey.objects.get(pk=tenant.key.pk).suspended_at is None


def test_the_operator_lifts_a_suspension_in_the_admin(api, tenant, policy, settings):
    policy(TERMS)
    settings.MODERATION_SUSPEND_AFTER = 0  # never suspends by itself
    APIKey.objects.filter(pk=tenant.key.pk).update(
        suspended_at=timezone.now(), suspended_reason="test"
    )
    assert api.get("/v1/models").status_code == 403
    staff = browser(User.objects.create_superuser(email="ops@example.com", password="pw"))
    listing = staff.get("/admin/accounts/apikey/?suspended_at__isnull=False")
    assert listing.status_code == 200 and tenant.key.prefix in listing.content.decode()
    staff.post(
        "/admin/accounts/apikey/",
        {"action": "lift_suspension", "_selected_action": [tenant.key.pk]},
    )
    assert APIKey.objects.get(pk=tenant.key.pk).suspended_at is None
    assert api.get("/v1/models").status_code == 200


def test_the_admin_lists_blocks_with_their_prompt(api, policy):
    policy(TERMS)
    api.post(URL, {**BLOCKED, "prompt": "so much gore"}, format="json")
    staff = browser(User.objects.create_superuser(email="ops@example.com", password="pw"))
    page = staff.get("/admin/generations/moderationblock/")
    html = page.content.decode()
    assert page.status_code == 200 and "violence" in html and "acme" in html
    block = ModerationBlock.objects.get()
    detail = staff.get(f"/admin/generations/moderationblock/{block.pk}/change/")
    assert "so much gore" in detail.content.decode()


def test_block_records_are_purged_after_their_retention(api, policy, settings):
    policy(TERMS)
    settings.MODERATION_RETENTION_DAYS = 30
    api.post(URL, BLOCKED, format="json")
    api.post(URL, BLOCKED, format="json")
    old = ModerationBlock.objects.order_by("pk").first()
    ModerationBlock.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    assert purge_all(only=["moderation_blocks"]) == {"moderation_blocks": 1}
    assert list(ModerationBlock.objects.values_list("pk", flat=True)) != [old.pk]
    assert ModerationBlock.objects.count() == 1


def test_the_dashboard_charts_blocks_per_organization_and_category(api, other_tenant, policy):
    policy({"categories": {**TERMS["categories"], "weapons": {"terms": ["rifle"]}}})
    api.post(URL, BLOCKED, format="json")
    api.post(URL, {**BLOCKED, "prompt": "gore and a rifle"}, format="json")
    other_tenant.client().post(URL, {**BLOCKED, "prompt": "rifle"}, format="json")
    staff = browser(User.objects.create_superuser(email="ops@example.com", password="pw"))
    html = staff.get("/dashboard/").content.decode()
    assert "Moderation blocks per day by organization" in html
    assert "Moderation blocks per day by category" in html
    from generations.moderation.records import block_history

    today = timezone.now().date()
    history = block_history(start=today, end=today + dt.timedelta(days=1))
    assert history["by_organization"] == {"acme": [2], "globex": [1]}
    assert history["by_category"] == {"violence": [2], "weapons": [2]}


def test_only_an_owner_makes_the_organization_stricter(tenant):
    admin = browser(tenant.member(Membership.Role.ADMIN))
    admin.post("/organization/", {"moderation": "1", "strict": "on"})
    assert not Organization.objects.get(pk=tenant.org.pk).moderation_strict
    owner = browser(tenant.user)
    page = owner.get("/organization/").content.decode()
    assert "Always apply the whole content policy" in page
    owner.post("/organization/", {"moderation": "1", "strict": "on"})
    assert Organization.objects.get(pk=tenant.org.pk).moderation_strict
    assert Organization.objects.get(pk=tenant.org.pk).name == "acme"  # the name untouched
    assert tenant.manage_client().get("/v1/organization").json()["moderation_strict"] is True
    owner.post("/organization/", {"moderation": "1"})
    assert not Organization.objects.get(pk=tenant.org.pk).moderation_strict
