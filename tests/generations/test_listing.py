"""Queue visibility: the poll shows a queued job's place and timestamps; the list of a
tenant's generations filters and pages with a cursor, and shows nobody else's."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations import lifecycle
from generations.selectors import estimated_start_seconds
from tests.jobs import finish_by_hand

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
    done = finish_by_hand(make_generation().id)
    waiting = make_generation()
    body = api.get(f"{URL}/{waiting.id}").json()
    assert body["queue_position"] == 0
    # One job finished a moment ago: this one, first in line, starts about now.
    assert 0 <= body["estimated_start"] - time.time() <= 5
    # A minute on, the pace is one job a minute: the first in line starts in about a
    # minute, the second in about two.
    later = done.finished_at + timedelta(seconds=60)
    assert estimated_start_seconds(waiting, 0, now=later) == 60.0
    assert estimated_start_seconds(waiting, 1, now=later) == 120.0
    # Ten minutes without a finished job: no pace to estimate from.
    assert estimated_start_seconds(waiting, 0, now=later + timedelta(minutes=10)) is None


def test_list_filters_pages_and_keeps_tenants_apart(tenant, other_tenant, api, make_generation):
    made = [make_generation(prompt=f"job {i}") for i in range(5)]
    lifecycle.generation_fail(generation_id=made[0].id, code="engine_error", message="broke")
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


def test_a_page_of_queued_jobs_reads_the_queue_once(tenant, api, make_generation):
    finish_by_hand(make_generation().id)  # a recent pace, so there are estimates
    waiting = [make_generation(prompt=f"job {i}") for i in range(6)]
    polled = {g.id: api.get(f"{URL}/{g.id}").json() for g in waiting}
    with CaptureQueriesContext(connection) as few:
        api.get(URL, {"limit": 2, "status": "queued"})
    with CaptureQueriesContext(connection) as many:
        page = api.get(URL, {"limit": 6, "status": "queued"}).json()["data"]
    assert [item["id"] for item in page] == [g.id for g in reversed(waiting)]
    for item in page:
        assert item["queue_position"] == polled[item["id"]]["queue_position"]
        assert abs(item["estimated_start"] - polled[item["id"]]["estimated_start"]) <= 2
    # Four more queued jobs on the page cost one query each (the jobs ahead in their
    # organization), not a look at every queue each.
    assert len(many.captured_queries) - len(few.captured_queries) <= 4
