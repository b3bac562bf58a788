"""A worker killed with SIGKILL in the middle of a batch (the OOM killer, a lost node):
the other worker takes its jobs over and finishes them, and money moves once."""

from __future__ import annotations

import signal

import pytest

from generations.models import Generation
from tests.chaos.conftest import (
    assert_all_succeeded,
    assert_money_moved_once,
    broker_for,
    wait_finished,
)
from tests.processes import wait_for, wait_worker, worker_name

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_sigkill_mid_batch_the_other_worker_finishes_every_job(
    broker, deployment, broker_client, make_generation, tenant
):
    stack = deployment(broker_for(broker))
    first, second = stack.worker(wait=False), stack.worker(wait=False)
    wait_worker(first)
    wait_worker(second)
    workers = {worker_name(first): first, worker_name(second): second}
    jobs = [
        make_generation(prompt=f"kill {i}", n=1, width=128, height=128, steps=10, seed=i)
        for i in range(6)
    ]
    ids = [job.id for job in jobs]
    client = broker_client(stack.broker_url, stack.queue)
    for job in ids:
        client.send(job)

    def busiest() -> str | None:
        running = list(
            Generation.objects.filter(pk__in=ids, status="running").values_list("worker", flat=True)
        )
        return max(set(running), key=running.count) if running else None

    victim_name = wait_for(busiest, 120, lambda: f"a job to start\n{stack.logs()}", 0.02)
    victim = workers.pop(victim_name)
    [(survivor_name, survivor)] = workers.items()
    # Frozen first, so that what it was in the middle of can be read before it dies.
    victim.signal(signal.SIGSTOP)
    cut_off = set(
        Generation.objects.filter(pk__in=ids, status="running", worker=victim_name).values_list(
            "id", flat=True
        )
    )
    victim.signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    assert cut_off

    rows = wait_finished(ids, stack)
    assert_all_succeeded(rows, stack)
    for row in rows:
        if row.id in cut_off:
            # Taken over: claimed again, by the survivor.
            assert row.worker == survivor_name and row.attempts >= 2, (row.id, row.worker)
    assert survivor.alive(), survivor.tail()
    assert_money_moved_once(ids, tenant.org)
