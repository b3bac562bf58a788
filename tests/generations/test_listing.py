"""Queue visibility: the poll shows a queued job's place and timestamps; the list of a
tenant's generations filters and pages with a cursor, and shows nobody else's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from generations.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


def test_a_queued_job_reports_its_place_and_timestamps(tenant, api, make_generation):
    first, second = make_generation(), make_generation()
    body = api.get(f"{URL}/{second.id}").json()
    assert body["status"] == "queued" and body["queue_position"] == 1
    assert body["estimated_start"] is None  # no recent pace to estimate from
    assert body["timestamps"]["queued"] == int(second.created_at.timestamp())
    assert body["timestamps"]["started"] is None
    assert api.get(f"{URL}/{first.id}").json()["queue_position"] == 0


def test_the_estimate_follows_the_recent_pace(tenant, api, make_generation):
    done = make_generation()
    now = timezone.now()
    Generation.objects.filter(pk=done.pk).update(
        status="succeeded",
        started_at=now - timedelta(seconds=62),
        finished_at=now - timedelta(seconds=60),
    )
    waiting = make_generation()
    body = api.get(f"{URL}/{waiting.id}").json()
    assert body["queue_position"] == 0
    # One job finished in the last 60 s: this one, first in line, in about a minute.
    assert 40 <= body["estimated_start"] - now.timestamp() <= 130


def test_list_filters_pages_and_keeps_tenants_apart(tenant, other_tenant, api, make_generation):
    made = [make_generation(prompt=f"job {i}") for i in range(5)]
    Generation.objects.filter(pk=made[0].pk).update(status="failed")
    other_tenant.client().post(
        URL, {"prompt": "theirs"}, format="json", HTTP_PREFER="respond-async"
    )
    first = api.get(URL, {"limit": 2}).json()
    assert [g["id"] for g in first["data"]] == [made[4].id, made[3].id]
    assert first["has_more"] and "data" not in first["data"][0]
    second = api.get(URL, {"limit": 2, "after": first["next_cursor"]}).json()
    third = api.get(URL, {"limit": 2, "after": second["next_cursor"]}).json()
    seen = [g["id"] for page in (first, second, third) for g in page["data"]]
    assert seen == [g.id for g in reversed(made)] and not third["has_more"]
    failed = api.get(URL, {"status": "failed"}).json()["data"]
    assert [g["id"] for g in failed] == [made[0].id]
    assert api.get(URL, {"api_key": tenant.key.pk + 1000}).json()["data"] == []


def test_list_items_carry_no_image_data(api):
    api.post(URL, {"prompt": "done", "size": "64x64"}, format="json")
    item = api.get(URL).json()["data"][0]
    assert item["status"] == "succeeded" and "data" not in item and item["usage"]


@pytest.mark.parametrize(
    ("query", "param"),
    [({"status": "lost"}, "status"), ({"limit": 0}, "limit"), ({"after": "nonsense!"}, "after")],
)
def test_bad_list_queries_name_the_parameter(api, query, param):
    response = api.get(URL, query)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
