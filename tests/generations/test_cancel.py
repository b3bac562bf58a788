"""Canceling: a queued job at once, a running one at its next step; money comes back."""

import time

import pytest

from accounts.models import CreditEntry, Organization
from generations.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


def _wait(api, generation_id, status, seconds=30):
    deadline = time.monotonic() + seconds
    while (body := api.get(f"{URL}/{generation_id}").json())["status"] != status:
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    return body


def test_cancel_a_queued_generation(tenant, api, stub_broker):
    # The job stays queued: nothing consumes the broker.
    created = api.post(URL, {"prompt": "never"}, format="json", HTTP_PREFER="respond-async")
    generation_id = created.json()["id"]
    canceled = api.post(f"{URL}/{generation_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    org = Organization.objects.get(pk=tenant.org.pk)
    assert (org.credit_balance, org.credits_held) == (tenant.CREDITS, 0)
    assert list(
        CreditEntry.objects.filter(generation_id=generation_id).values_list("kind", flat=True)
    ) == ["hold", "release"]
    # A late delivery of the message does nothing.
    from generations.worker.jobs import run_generation

    run_generation(generation_id=generation_id)
    assert Generation.objects.get(pk=generation_id).status == "canceled"


def test_cancel_a_running_generation_stops_between_steps(tenant, api):
    created = api.post(
        URL,
        {"prompt": "long", "size": "512x512", "num_inference_steps": 50},
        format="json",
        HTTP_PREFER="respond-async",
    )
    generation_id = created.json()["id"]
    _wait(api, generation_id, "running")
    response = api.post(f"{URL}/{generation_id}/cancel")
    assert response.json()["cancel_requested"] is True
    # Canceled, not succeeded: the worker stopped between two of the 50 steps (a cancel
    # seen only after the pipeline call would find the job succeeded). No wall-clock
    # bound: on a loaded machine a step takes what it takes.
    body = _wait(api, generation_id, "canceled")
    assert body["error"]["code"] == "canceled"
    generation = Generation.objects.get(pk=generation_id)
    assert generation.images.count() == 0 and generation.charged == 0
    org = Organization.objects.get(pk=tenant.org.pk)
    assert (org.credit_balance, org.credits_held) == (tenant.CREDITS, 0)


def test_cancel_someone_elses_is_404(api, other_tenant, stub_broker):
    generation_id = api.post(
        URL, {"prompt": "mine"}, format="json", HTTP_PREFER="respond-async"
    ).json()["id"]
    assert other_tenant.client().post(f"{URL}/{generation_id}/cancel").status_code == 404
    assert Generation.objects.get(pk=generation_id).status == "queued"


def test_cancel_a_finished_generation_changes_nothing(api):
    body = api.post(URL, {"prompt": "done", "size": "64x64"}, format="json").json()
    response = api.post(f"{URL}/{body['id']}/cancel").json()
    assert response["status"] == "succeeded" and len(response["data"]) == 1


def test_job_time_limit_fails_the_job_and_releases_the_hold(tenant, api, monkeypatch):
    from generations.engine.pipelines import Engine
    from generations.worker.actors import generate

    real_run = Engine.run

    def slow(self, *args, **kwargs):
        time.sleep(3)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "run", slow)
    monkeypatch.setitem(generate.options, "time_limit", 500)  # ms
    response = api.post(URL, {"prompt": "too slow", "size": "64x64"}, format="json")
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "timeout" and "time limit" in error["message"]
    generation = Generation.objects.get(pk=error["generation_id"])
    assert generation.status == "failed" and generation.charged == 0
    org = Organization.objects.get(pk=tenant.org.pk)
    assert (org.credit_balance, org.credits_held) == (tenant.CREDITS, 0)
    time.sleep(3)  # let the abandoned call finish before the next test
