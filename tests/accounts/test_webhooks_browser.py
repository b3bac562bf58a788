"""The webhooks page in a real browser (headless Debian chromium through Playwright):
set the organization's default webhook, copy the secret from the one-time dialog, get
a signed delivery for a generation made with the official `openai` client, see it in the
log and redeliver it. Screenshots go under ``settings.TEST_OUTPUT_DIR / "screenshots"``."""

from __future__ import annotations

import openai
import pytest

from accounts.webhooks import signing as webhook_signing
from accounts.webhooks.models import WebhookDelivery
from tests.conftest import Tenant
from tests.webhook_receiver import Receiver

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_default_webhook_set_in_the_page_signs_deliveries_and_redelivers(
    live_server, page, shots, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    tenant = Tenant("hookpage")
    tenant.user.set_password("pw-for-the-browser-1")
    tenant.user.save()
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill(tenant.user.email)
    page.get_by_label("Password").fill("pw-for-the-browser-1")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Webhooks").click()
    page.wait_for_url("**/webhooks/")

    with Receiver() as receiver:
        form = page.locator("#webhook-settings form")
        form.get_by_label("Default webhook URL").fill(f"{receiver.url}/from-the-page")
        form.get_by_label("completed", exact=True).check()
        form.get_by_role("button", name="Save and create the signing secret").click()
        dialog = page.locator("dialog#reveal")
        sync_api.expect(dialog).to_be_visible()
        sync_api.expect(dialog).to_contain_text("will not be shown again")
        secret = dialog.locator("#secret").input_value()
        assert secret.startswith("whsec_")
        page.screenshot(path=shots / "webhooks-reveal-dialog.png")
        page.get_by_role("button", name="I have copied it").click()
        sync_api.expect(page.locator("dialog#reveal")).to_have_count(0)
        assert secret not in page.content()

        with openai.OpenAI(
            base_url=f"{live_server.url}/v1", api_key=tenant.secret, max_retries=0, timeout=120
        ) as client:
            result = client.images.generate(model="demo-sd", prompt="a lighthouse", size="64x64")
        [first] = receiver.wait_for(1)
        headers = first.headers
        assert first.path == "/from-the-page"
        assert webhook_signing.verify(
            secret,
            msg_id=headers["webhook-id"],
            timestamp=int(headers["webhook-timestamp"]),
            body=first.body,
            header=headers["webhook-signature"],
        )
        assert result.model_extra["id"] in first.body.decode()

        page.goto(f"{live_server.url}/webhooks/")  # not a reload: that would POST again
        row = page.locator("tr", has_text=result.model_extra["id"])
        sync_api.expect(row).to_contain_text("succeeded")
        sync_api.expect(row).to_contain_text("204")
        page.screenshot(path=shots / "webhooks-page.png", full_page=True)
        row.get_by_role("button", name="Redeliver").click()
        sync_api.expect(page.locator(".messages")).to_contain_text("again")
        second = receiver.wait_for(2)[1]
        assert second.headers["webhook-id"] == headers["webhook-id"]
    delivery = WebhookDelivery.objects.get(generation_id=result.model_extra["id"])
    assert delivery.attempts == 2
