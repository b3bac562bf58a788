"""The keys page in a real browser (headless Debian chromium through Playwright), with
the official `openai` client calling the live server with the keys made in the page.

Screenshots of the keys page and of the one-time reveal dialog are saved under
``settings.TEST_OUTPUT_DIR / "screenshots"`` (fixtures `page` and `shots` are in
tests/accounts/conftest.py).
"""

from __future__ import annotations

import re

import openai
import pytest
from django.core import mail

from accounts.models import Organization

sync_api = pytest.importorskip("playwright.sync_api")

PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.browser


def _create_key(page, name: str, *, models=(), rpm: str = "") -> str:
    """Fill the create form, return the secret shown in the reveal dialog."""
    form = page.locator("#new-key form")
    form.get_by_label("Name").fill(name)
    for model in models:
        form.get_by_label(model, exact=True).check()
    if rpm:
        form.get_by_label("Requests per minute").fill(rpm)
    form.get_by_role("button", name="Create key").click()
    return _read_reveal(page)


def _read_reveal(page) -> str:
    dialog = page.locator("dialog#reveal")
    sync_api.expect(dialog).to_be_visible()
    sync_api.expect(dialog).to_contain_text("will not be shown again")
    return dialog.locator("#secret").input_value()


def _close_reveal(page) -> None:
    page.get_by_role("button", name="I have copied it").click()
    # Closing the dialog takes the secret out of the page.
    sync_api.expect(page.locator("dialog#reveal")).to_have_count(0)


def _client(live_server, secret: str) -> openai.OpenAI:
    """Use as a context manager: a kept-alive connection would keep a live-server thread
    (and its database connection) open after the test."""
    return openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0, timeout=120
    )


def test_keys_made_in_the_page_work_with_openai_until_revoked_or_rotated(live_server, page, shots):
    # Sign up: the account and its first organization.
    page.goto(f"{live_server.url}/keys/")
    assert "/login/" in page.url
    page.get_by_role("link", name="Sign up").click()
    page.screenshot(path=shots / "sign-up.png")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_label("Organization name").fill("Hopper Labs")
    page.get_by_role("button", name="Sign up").click()
    # Every address gets the same answer; the account waits for its verification link.
    page.wait_for_url("**/signup/sent/")
    sync_api.expect(page.locator("h1")).to_have_text("Check your email")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/keys/")
    sync_api.expect(page.locator(".verify-banner")).to_contain_text("Verify your email address")
    page.screenshot(path=shots / "verify-banner.png")
    [message] = [m for m in mail.outbox if m.to == ["grace@example.com"]]
    link = re.search(r"https?://[^/\s]+(/verify-email/\S+/)", message.body).group(1)
    page.goto(f"{live_server.url}{link}")
    page.wait_for_url("**/keys/")
    sync_api.expect(page.locator(".verify-banner")).to_have_count(0)
    sync_api.expect(page.locator("#org-switcher")).to_contain_text("Hopper Labs")
    org = Organization.objects.get(name="Hopper Labs")
    try:  # billing, where present, charges generations: give the organization credits
        from accounts.ledger import credits_top_up

        credits_top_up(organization=org, amount=10**9, memo="browser test")
    except ImportError:
        pass

    # Create a key; the secret appears once, in the reveal dialog.
    secret = _create_key(page, "laptop", models=["demo-sd"], rpm="60")
    assert secret.startswith("ihk_")
    page.screenshot(path=shots / "keys-reveal-dialog.png")
    _close_reveal(page)
    row = page.locator("tr", has_text="laptop")
    sync_api.expect(row).to_contain_text(f"{secret[:16]}…{secret[-4:]}")
    sync_api.expect(row).to_contain_text("demo-sd")
    sync_api.expect(row).to_contain_text("60 req/min")
    assert secret not in page.content()

    # The key works with the official client.
    with _client(live_server, secret) as client:
        result = client.images.generate(model="demo-sd", prompt="a lighthouse", size="64x64")
    assert len(result.data) == 1 and result.data[0].b64_json

    # Rotate another key with no grace: the old secret stops at once.
    old = _create_key(page, "ci runner")
    _close_reveal(page)
    page.locator("tr", has_text="ci runner").get_by_role("link", name="Edit").click()
    page.screenshot(path=shots / "key-detail.png", full_page=True)
    page.get_by_label("Old secret stops working").select_option("0")
    page.get_by_role("button", name="Rotate secret").click()
    new = _read_reveal(page)
    sync_api.expect(page.locator("dialog#reveal")).to_contain_text("stopped working")
    _close_reveal(page)
    assert new != old
    with _client(live_server, old) as client, pytest.raises(openai.AuthenticationError):
        client.models.list()
    with _client(live_server, new) as client:
        assert client.models.list().data

    # Revoke the first key in the page: the client gets 401.
    page.locator("tr", has_text="laptop").get_by_role("button", name="Revoke").click()
    sync_api.expect(page.locator(".messages")).to_contain_text("Revoked “laptop”")
    sync_api.expect(page.locator("tr", has_text="laptop")).to_contain_text("revoked")
    page.screenshot(path=shots / "keys-page.png", full_page=True)
    with _client(live_server, secret) as client, pytest.raises(openai.AuthenticationError):
        client.images.generate(prompt="a lighthouse", size="64x64")

    page.get_by_role("link", name="Members").click()
    page.screenshot(path=shots / "members-page.png", full_page=True)
