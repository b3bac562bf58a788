"""The Adapters page in a real browser (headless Debian chromium through Playwright):
upload a LoRA with the progress bar showing (the upload throttled), see it listed with
its base model and size, use it with the official `openai` client and see its last use,
get a clear error for an adapter of another model, delete it. Screenshots go under
``settings.TEST_OUTPUT_DIR / "screenshots"``."""

from __future__ import annotations

import openai
import pytest

from generations.adapters.models import Adapter
from tests.accounts.conftest import page, shots  # noqa: F401 (fixtures)
from tests.adapters import demo_file
from tests.conftest import Tenant

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-the-adapters-page"


def test_upload_with_progress_use_and_delete_in_the_page(live_server, page, shots):  # noqa: F811
    tenant = Tenant("lorapage")
    tenant.user.set_password(PASSWORD)
    tenant.user.save()
    Tenant("someoneelse")  # another organization, whose adapters must never show
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Email").fill(tenant.user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.locator(".mainnav").get_by_role("link", name="Adapters", exact=True).click()
    page.wait_for_url("**/adapters/")
    sync_api.expect(page.locator("table.adapters")).to_contain_text("No adapters yet")

    # Upload at ~40 KB/s, so the progress bar is seen moving.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 40_000},
    )
    form = page.locator("#adapter-upload")
    form.get_by_label("Name").fill("ink wash")
    form.get_by_label("Base model").select_option("demo-sd")
    form.get_by_label("File").set_input_files(str(demo_file("demo-sd")))
    form.get_by_role("button", name="Upload").click()
    progress = page.locator("#upload-progress progress")
    sync_api.expect(progress).to_be_visible()
    page.wait_for_function(
        "() => { const p = document.querySelector('#upload-progress progress');"
        " return p && p.value > 0 && p.value < 100; }"
    )
    page.screenshot(path=shots / "adapters-uploading.png")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    row = page.locator("tr", has_text="ink wash")
    sync_api.expect(row).to_be_visible(timeout=60_000)
    adapter = Adapter.objects.get(organization=tenant.org, name="ink wash")
    sync_api.expect(row).to_contain_text("demo-sd")
    sync_api.expect(row).to_contain_text(adapter.pk)
    sync_api.expect(row).to_contain_text("KB")
    sync_api.expect(row.locator("td[data-label='Last used']")).to_have_text("never")
    sync_api.expect(page.locator(".messages")).to_contain_text("Uploaded ink wash")

    with openai.OpenAI(
        base_url=f"{live_server.url}/v1", api_key=tenant.secret, max_retries=0, timeout=120
    ) as client:
        result = client.images.generate(
            model="demo-sd",
            prompt="a lighthouse",
            size="64x64",
            extra_body={"loras": [{"id": adapter.pk, "scale": 0.7}]},
        )
    assert result.model_extra["loras"][0]["id"] == adapter.pk
    page.reload()
    sync_api.expect(row.locator("td[data-label='Last used']")).not_to_have_text("never")
    page.screenshot(path=shots / "adapters-page.png", full_page=True)

    # An adapter of another base model: the page says why, nothing is stored.
    form.get_by_label("Name").fill("wrong one")
    form.get_by_label("Base model").select_option("demo-sd")
    form.get_by_label("File").set_input_files(str(demo_file("demo-flux")))
    form.get_by_role("button", name="Upload").click()
    error = page.locator("#upload-error")
    sync_api.expect(error).to_be_visible()
    sync_api.expect(error).to_contain_text("not modules of model 'demo-sd'")
    assert not Adapter.objects.filter(name="wrong one").exists()

    row.get_by_role("button", name="Delete").click()
    sync_api.expect(page.locator("tr", has_text="ink wash")).to_have_count(0)
    assert not Adapter.objects.filter(pk=adapter.pk).exists()
