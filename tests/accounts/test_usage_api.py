"""Tenants read their balance and usage; rollups are kept as generations finish."""

import csv
import io

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


@pytest.fixture
def spent(tenant, api):
    bodies = [
        api.post(URL, {"prompt": "a", "n": 2}, format="json").json(),
        api.post(URL, {"prompt": "b"}, format="json").json(),
        api.post(URL, {"prompt": "c", "model": "demo-flux"}, format="json").json(),
    ]
    return sum(body["usage"]["credits_charged"] for body in bodies)


def test_credits(tenant, api, spent):
    body = api.get("/v1/credits").json()
    assert body["balance"] == tenant.CREDITS - spent
    assert body["held"] == 0
    assert body["spent_this_month"] == spent == body["committed_this_month"]
    assert body["key"]["spent_this_month"] == spent


def test_usage_by_model_and_csv(api, spent):
    body = api.get("/v1/usage", {"group_by": "model"}).json()
    by_model = {row["model"]: row for row in body["data"]}
    assert by_model["demo-sd"]["images"] == 3 and by_model["demo-sd"]["requests"] == 2
    assert by_model["demo-flux"]["images"] == 1
    assert sum(row["credits"] for row in body["data"]) == spent
    assert all(row["output_tokens"] > 0 and row["avg_latency_ms"] >= 0 for row in body["data"])
    hourly = api.get("/v1/usage", {"bucket": "hour", "group_by": "key,user"}).json()
    assert hourly["data"][0]["user"] == "owner@acme.example"
    response = api.get("/v1/usage", {"group_by": "model", "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["model"] for row in rows} == {"demo-sd", "demo-flux"}
    assert sum(int(row["credits"]) for row in rows) == spent


def test_pagination(api, spent):
    first = api.get("/v1/usage", {"group_by": "model", "limit": 1}).json()
    assert len(first["data"]) == 1 and first["has_more"]
    second = api.get("/v1/usage", {"group_by": "model", "limit": 1, "page": 2}).json()
    assert len(second["data"]) == 1 and not second["has_more"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"bucket": "week"}, "bucket"),
        ({"group_by": "colour"}, "group_by"),
        ({"start": "yesterday-ish"}, "start"),
        ({"start": "2026-13-40"}, "start"),
        ({"end": "99999999999999999"}, "end"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "end"),
        ({"limit": "0"}, "limit"),
        ({"page": "x"}, "page"),
    ],
)
def test_bad_usage_queries(api, query, param):
    response = api.get("/v1/usage", query)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_tenants_see_only_their_own(other_tenant, spent):
    other = other_tenant.client()
    assert other.get("/v1/usage").json()["data"] == []
    assert other.get("/v1/credits").json()["spent_this_month"] == 0
