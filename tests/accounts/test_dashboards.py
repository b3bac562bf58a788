"""The usage page (tenants) and the operator dashboard (staff), from the rollups."""

import pytest

from accounts.models import UsageRollup, User
from accounts.usage import latency_bucket, percentile_ms

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


def test_latency_percentiles_from_histogram():
    histogram = {}
    for ms in [40] * 50 + [180] * 45 + [2500] * 5:
        bucket = latency_bucket(ms)
        histogram[bucket] = histogram.get(bucket, 0) + 1
    assert percentile_ms(histogram, 0.50) == 50
    assert percentile_ms(histogram, 0.95) == 200
    assert percentile_ms(histogram, 0.99) == 3000
    assert percentile_ms({}, 0.5) is None


@pytest.fixture
def usage(tenant, api):
    for body in ({"prompt": "a", "n": 2}, {"prompt": "b", "model": "demo-flux"}):
        assert api.post(URL, body, format="json").status_code == 200
    return tenant


def test_rollups_follow_generations(usage):
    rows = UsageRollup.objects.filter(organization=usage.org)
    assert sum(r.images for r in rows) == 3 and sum(r.requests for r in rows) == 2
    assert sum(sum(r.latency_histogram.values()) for r in rows) == 2


def test_usage_page_shows_charts(usage, client):
    client.force_login(usage.user)
    page = client.get("/usage/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('<svg class="chart"') == 4 and "demo-flux" in html and "demo-sd" in html
    assert "Spend per day by model" in html and "Download CSV" in html
    assert client.get("/usage/?start=2026-13-40").status_code == 200  # bad dates fall back


def test_usage_page_needs_login(client):
    response = client.get("/usage/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_operator_dashboard_is_for_staff(usage, client, other_tenant):
    client.force_login(usage.user)
    assert client.get("/dashboard/").status_code == 302  # to the admin login
    staff = User.objects.create_superuser(email="ops@example.com", password="pw")
    client.force_login(staff)
    page = client.get("/dashboard/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Top organizations" in html and "acme" in html and "Latency p50 / p95" in html
    assert html.count('<svg class="chart"') == 4  # + queue by model, by organization
    assert "Operator dashboard" in client.get("/admin/").content.decode()
