"""Removing a member in a real browser (headless chromium through Playwright): the
confirmation page lists the keys the removal ends, the owner takes them over, and the
audit log on the Organization page says so (issue 23)."""

from __future__ import annotations

import pytest

from accounts.models import APIKey, Membership
from tests.conftest import Tenant

sync_api = pytest.importorskip("playwright.sync_api")

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.browser


def test_an_owner_removes_a_member_and_takes_their_keys_over(live_server, page, shots):
    tenant = Tenant("acme")
    tenant.user.set_password(PASSWORD)
    tenant.user.save()
    member = tenant.member(Membership.Role.MEMBER, email="mallory@acme.example")
    kept, _ = tenant.new_key(member, name="render farm")

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill(tenant.user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/keys/")
    page.goto(f"{live_server.url}/members/")
    page.locator("tr[data-member='mallory@acme.example']").get_by_role(
        "link", name="Remove"
    ).click()
    sync_api.expect(page.locator("#member-keys")).to_contain_text("render farm")
    page.get_by_label("Transfer them to me").check()
    page.screenshot(path=shots / "member-remove-confirm.png")
    page.get_by_role("button", name="Remove").click()
    page.wait_for_url("**/members/")
    sync_api.expect(page.locator(".messages")).to_contain_text("1 key transferred to you")
    sync_api.expect(page.locator("tr[data-member='mallory@acme.example']")).to_have_count(0)

    page.goto(f"{live_server.url}/organization/")
    log = page.locator("#audit-log")
    sync_api.expect(log).to_contain_text("removed mallory@acme.example")
    sync_api.expect(log).to_contain_text(f"transferred {kept.redacted}")
    page.screenshot(path=shots / "organization-audit-log.png")
    kept.refresh_from_db()
    assert kept.created_by_id == tenant.user.pk
    assert APIKey.objects.get(pk=kept.pk).revoked_at is None
