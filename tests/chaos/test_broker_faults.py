"""The broker fails the jobs it was given: down when requests arrive, or losing the
messages it held. Accepted jobs still run (the row is the outbox), and money moves once."""

from __future__ import annotations

import shutil

import pytest

from generations.models import Generation
from tests.chaos.conftest import (
    assert_all_succeeded,
    assert_money_moved_once,
    broker_for,
    job_body,
    session,
    submit_async,
    wait_finished,
)
from tests.processes import RedisServer, wait_for, wait_worker

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def private_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis-server")
    (tmp_path / "redis-server").mkdir()
    server.start()
    yield server
    server.stop()


def test_broker_down_at_submit_accepted_jobs_run_when_it_is_back(private_redis, deployment, tenant):
    stack = deployment(private_redis.url)
    web, worker = stack.web(wait=False), stack.worker(wait=False)
    web.wait()
    wait_worker(worker)
    client = session(tenant.secret)
    before = submit_async(client, web.base, job_body(0))
    assert before.status_code == 202, before.text
    wait_finished([before.json()["id"]], stack)

    private_redis.stop()
    accepted = []
    for index in range(1, 5):
        response = submit_async(client, web.base, job_body(index))
        # Accepted and recorded, never a 500: the job waits in the database.
        assert response.status_code == 202, response.text
        assert response.headers["x-generation-id"] == response.json()["id"]
        accepted.append(response.json()["id"])
    polled = client.get(f"{web.base}/v1/images/generations/{accepted[0]}", timeout=60)
    assert polled.status_code == 200 and polled.json()["status"] == "queued"
    assert set(Generation.objects.filter(pk__in=accepted).values_list("status", flat=True)) == {
        "queued"
    }

    assert web.process.text().count("broker unavailable") == len(accepted)
    # The recovery loop keeps trying (and failing) while the broker is down.
    wait_for(lambda: "broker unavailable" in worker.text(), 60, "a send from the recovery loop")
    private_redis.start()  # empty: every message sent before the outage is gone too
    rows = wait_finished(accepted, stack)
    assert_all_succeeded(rows, stack)
    assert all(row.dispatches >= 2 for row in rows)  # sent again by the recovery loop
    assert_money_moved_once([*accepted, before.json()["id"]], tenant.org)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_queued_messages_lost_the_jobs_still_run(broker, deployment, broker_client, tenant):
    stack = deployment(broker_for(broker))
    web = stack.web()
    client = session(tenant.secret)
    accepted = []
    for index in range(4):  # no worker consumes: the messages wait on the broker
        response = submit_async(client, web.base, job_body(index))
        assert response.status_code == 202, response.text
        accepted.append(response.json()["id"])

    lost = broker_client(stack.broker_url, stack.queue).lose_messages()
    assert lost == len(accepted)

    stack.worker()
    rows = wait_finished(accepted, stack)
    assert_all_succeeded(rows, stack)
    assert all(row.dispatches >= 2 for row in rows)
    assert_money_moved_once(accepted, tenant.org)
