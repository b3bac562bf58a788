"""Both dashboards with data, in headless Chromium; screenshots go to the test output."""

from __future__ import annotations

import pytest

from accounts.models import User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def _sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def traffic(tenant, other_tenant):
    """A few generations on both models, in two organizations and two keys."""
    second_key, second_secret = tenant.new_key(name="batch jobs")
    from tests.conftest import bearer_client

    for client, body in [
        (tenant.client(), {"prompt": "a", "n": 3, "size": "64x64"}),
        (tenant.client(), {"prompt": "b", "model": "demo-flux", "size": "64x64"}),
        (bearer_client(second_secret), {"prompt": "c", "n": 2, "size": "128x128"}),
        (other_tenant.client(), {"prompt": "d", "n": 4, "size": "64x64"}),
    ]:
        assert client.post("/v1/images/generations", body, format="json").status_code == 200
    tenant.user.set_password(PASSWORD)
    tenant.user.save()
    return tenant


def test_tenant_usage_page(traffic, live_server, page, shots):
    _sign_in(page, live_server.url, traffic.user.email)
    page.goto(f"{live_server.url}/usage/")
    charts = page.locator("svg.chart")
    assert charts.count() == 4
    legend = page.locator(".legend").first
    assert "demo-sd" in legend.inner_text() and "demo-flux" in legend.inner_text()
    assert "batch jobs" in page.locator(".legend").nth(2).inner_text()
    page.screenshot(path=str(shots / "usage-page.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "imagehub-usage.csv"


def test_operator_dashboard(traffic, live_server, page, shots):
    User.objects.create_superuser(email="ops@example.com", password=PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/dashboard/")
    page.locator("#id_username").fill("ops@example.com")
    page.locator("#id_password").fill(PASSWORD)
    page.locator("input[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/dashboard/")
    # Usage (2), the queue (2) and moderation blocks by organization and by category (2).
    assert page.locator("svg.chart").count() == 6
    tops = page.locator("table").first.inner_text()
    assert "acme" in tops and "globex" in tops
    page.screenshot(path=str(shots / "operator-dashboard.png"), full_page=True)
