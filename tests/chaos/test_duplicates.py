"""Messages a broker delivers more than once (a redelivery, a re-send from the outbox)
and two workers getting the same job at the same moment: one run, one set of images,
one capture."""

from __future__ import annotations

import re
import uuid

import pytest
from django.conf import settings
from django.db import connection

from generations.models import Generation
from tests.chaos.conftest import (
    Deployment,
    assert_all_succeeded,
    assert_money_moved_once,
    broker_for,
    logdir_for,
    wait_finished,
)
from tests.processes import wait_for, wait_worker

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def racers(django_db_setup, django_db_blocker, tmp_path_factory):
    """Two workers on Redis: `a` consumes queue `qa`, `b` consumes `qb` (and both the
    deployment's queue), so a test can hand one job to both at once."""
    if connection.vendor != "postgresql":
        pytest.skip("the processes of a deployment need the PostgreSQL test database")
    url = broker_for("redis")
    tag = uuid.uuid4().hex[:8]
    with django_db_blocker.unblock():
        stack = Deployment(
            broker_url=url,
            queue=f"chaos-{tag}",
            workdir=tmp_path_factory.mktemp("racers"),
            logdir=logdir_for("duplicates"),
        )
    stack.qa, stack.qb = f"chaos-{tag}-a", f"chaos-{tag}-b"
    stack.a = stack.worker(wait=False, queues=[stack.queue, stack.qa])
    stack.b = stack.worker(wait=False, queues=[stack.queue, stack.qb])
    try:
        wait_worker(stack.a)
        wait_worker(stack.b)
        yield stack
    finally:
        stack.close()


def lines(worker, what: str, generation_id: str) -> int:
    return len(re.findall(rf"{what} {generation_id}\b", worker.text()))


def image_files(generation: Generation) -> list[str]:
    folder = settings.MEDIA_ROOT / "images"
    return sorted(p.name for p in folder.rglob(f"{generation.id}-*"))


def one_by_one(make_generation, deliver, label: str, count: int = 3) -> list[str]:
    """`count` jobs, each alone in the queue while its copies are delivered (with other
    jobs queued, a worker whose copy lost the race claims one of those instead: fair
    share treats messages as tokens), each finished before the next."""
    ids = []
    for i in range(count):
        job = make_generation(prompt=f"{label} {i}", n=2, width=64, height=64, steps=2, seed=i)
        deliver(job.id)
        wait_finished([job.id])
        ids.append(job.id)
    return ids


def assert_ran_once(stack: Deployment, ids: list[str], tenant) -> None:
    rows = wait_finished(ids, stack)
    assert_all_succeeded(rows, stack)
    for row in rows:
        assert row.attempts == 1, (row.id, row.attempts)
        assert row.images.count() == row.n == 2
        assert len(image_files(row)) == row.n, image_files(row)
    assert_money_moved_once(ids, tenant.org)


def test_the_same_message_delivered_twice_runs_once(racers, broker_client, make_generation, tenant):
    client = broker_client(racers.broker_url, racers.qa)

    def twice(job: str) -> None:  # back to back: two threads of worker `a` take them
        client.send(job)
        client.send(job)

    ids = one_by_one(make_generation, twice, "twice")
    assert_ran_once(racers, ids, tenant)
    for job in ids:
        assert lines(racers.a, "running", job) == 1, racers.a.tail()
        wait_for(lambda job=job: lines(racers.a, "skipped", job) >= 1, 30, f"{job} skipped")
        assert lines(racers.b, "running", job) == 0


def test_two_workers_racing_for_one_job_run_it_once(racers, broker_client, make_generation, tenant):
    client = broker_client(racers.broker_url, racers.qa)

    def to_both(job: str) -> None:  # one copy to each worker, at the same moment
        client.send(job, queue=racers.qa)
        client.send(job, queue=racers.qb)

    ids = one_by_one(make_generation, to_both, "race")
    assert_ran_once(racers, ids, tenant)
    # Each race had one winner and one loser: one worker ran the job, the other skipped.
    for job in ids:
        ran = [lines(worker, "running", job) for worker in (racers.a, racers.b)]
        assert sorted(ran) == [0, 1], (job, ran, racers.logs())
        loser = racers.b if ran[0] else racers.a
        wait_for(lambda job=job, loser=loser: lines(loser, "skipped", job) >= 1, 30, job)
