"""The usage page (tenants) and the operator dashboard (staff), from the rollups."""

import pytest

from accounts.models import UsageRollup, User
from accounts.usage import histogram_merge, latency_bucket, percentile_ms

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


def test_latency_percentiles_from_histogram():
    latencies = [40] * 50 + [180] * 45 + [2500] * 4 + [123_456]
    histogram = histogram_merge(
        [{latency_bucket(ms): 1} for ms in latencies] + [{latency_bucket(1234): 0}]
    )
    # Within 1% of the true (nearest-rank) percentiles, not a bucket's bound.
    for q, true in ((0.50, 40), (0.95, 180), (0.96, 2500), (0.99, 2500), (1.0, 123_456)):
        assert abs(percentile_ms(histogram, q) - true) <= 0.01 * true + 0.5, q
    assert percentile_ms({}, 0.5) is None
    assert percentile_ms({latency_bucket(0): 3}, 0.5) == 1


def test_percentiles_read_rows_written_with_the_old_bounds():
    # Rollups written before the logarithmic buckets: {"<upper bound ms>": count}.
    old = {"50": 50, "200": 45, "3000": 4, "inf": 1}
    assert percentile_ms(old, 0.5) == 50 and percentile_ms(old, 0.99) == 3000
    assert percentile_ms(old, 1.0) is None
    mixed = histogram_merge([old, {latency_bucket(100): 100}])
    assert percentile_ms(mixed, 0.5) == 100


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
    # + queue by model, by organization; moderation blocks by organization, by category
    assert html.count('<svg class="chart"') == 6
    assert "Operator dashboard" in client.get("/admin/").content.decode()
