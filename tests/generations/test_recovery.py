"""Liveness and recovery in one process: heartbeats, takeover of a job whose worker went
silent, messages sent again from the outbox, queue timeouts, ghosts that neither count
nor stick. (Real processes killed for real: tests/chaos/.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from dramatiq import Message

from accounts.models import CreditEntry, Organization
from generations import lifecycle, recovery, services
from generations.models import Generation
from generations.worker.jobs import run_generation
from generations.worker.liveness import Heartbeat

pytestmark = pytest.mark.django_db(transaction=True)


def kinds(generation) -> list[str]:
    return list(
        CreditEntry.objects.filter(generation_id=generation.id)
        .order_by("pk")
        .values_list("kind", flat=True)
    )


def sent(stub_broker) -> list[str]:
    """Generation ids of the messages waiting on the in-process broker's queues."""
    ids = []
    for name in list(stub_broker.queues):
        queue = stub_broker.queues[name]
        while not queue.empty():
            ids.append(Message.decode(queue.get_nowait()).args[0])
    return ids


def running_on_a_dead_worker(generation, *, silent: float = 60, attempts: int = 1) -> None:
    """The job as dying workers leave it: claimed through the service `attempts` times
    (each later claim a takeover from the worker before, which had died), the last
    worker's heartbeat silent for `silent` seconds."""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            stop_heartbeat(generation, silent)
        claimed = lifecycle.generation_claim(generation_id=generation.id, worker=f"gone:{attempt}")
        assert claimed == generation.id
    stop_heartbeat(generation, silent)
    assert Generation.objects.get(pk=generation.pk).attempts == attempts


def stop_heartbeat(generation, seconds: float) -> None:
    """Time passes without a heartbeat: the job's worker last vouched `seconds` ago."""
    Generation.objects.filter(pk=generation.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=seconds)
    )


def held(tenant) -> int:
    return Organization.objects.get(pk=tenant.org.pk).credits_held


def test_a_job_whose_worker_went_silent_is_queued_again_and_sent(make_generation, stub_broker):
    generation = make_generation()
    sent(stub_broker)  # the first message: lost with its worker
    running_on_a_dead_worker(generation)
    done = recovery.recover()
    assert done.taken_over == 1
    generation.refresh_from_db()
    assert (generation.status, generation.worker, generation.recoveries) == ("queued", "", 1)
    assert sent(stub_broker) == [generation.id]
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded" and generation.attempts == 2
    assert kinds(generation) == ["hold", "capture"]
    call_command("reconcile_ledger")


def test_a_live_job_is_not_taken_over(make_generation, stub_broker):
    generation = make_generation()
    running_on_a_dead_worker(generation, silent=1)  # well within the takeover time
    assert not recovery.recover()
    assert Generation.objects.get(pk=generation.pk).status == "running"


def test_out_of_attempts_fails_worker_lost_and_releases_the_hold(tenant, make_generation):
    generation = make_generation()
    running_on_a_dead_worker(generation, attempts=3)
    assert recovery.recover().worker_lost == 1
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == ("failed", "worker_lost")
    assert kinds(generation) == ["hold", "release"] and held(tenant) == 0
    call_command("reconcile_ledger")


def test_a_redelivered_message_takes_over_a_dead_workers_job_at_once(make_generation):
    generation = make_generation()
    running_on_a_dead_worker(generation)
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded" and generation.attempts == 2


def test_a_canceled_job_whose_worker_died_is_canceled(tenant, make_generation):
    generation = make_generation()
    running_on_a_dead_worker(generation, silent=0)
    # The client cancels while the worker is alive (it is asked to stop at its next
    # step), then the worker dies before it does.
    generation = services.generation_cancel(generation=generation)
    assert generation.status == "running" and generation.cancel_requested_at is not None
    stop_heartbeat(generation, 60)
    recovery.recover()
    assert Generation.objects.get(pk=generation.pk).status == "canceled"
    assert held(tenant) == 0


def test_cancel_clears_a_ghost_at_once(tenant, make_generation):
    generation = make_generation()
    running_on_a_dead_worker(generation)
    generation = services.generation_cancel(generation=generation)
    assert generation.status == "canceled" and held(tenant) == 0


def test_ghosts_do_not_count_toward_max_concurrent(tenant, make_generation):
    tenant.key.max_concurrent = 1
    tenant.key.save()
    ghost = make_generation()
    running_on_a_dead_worker(ghost)
    make_generation()  # accepted: the ghost does not count
    Generation.objects.filter(pk=ghost.pk).update(heartbeat_at=timezone.now())  # it woke up
    with pytest.raises(Exception, match="in flight"):
        make_generation()  # two live jobs now: refused


def test_a_queued_job_whose_message_was_lost_is_sent_again_with_backoff(
    make_generation, stub_broker, settings
):
    generation = make_generation()
    assert sent(stub_broker) == [generation.id]  # then the broker loses it
    assert not recovery.recover()  # not due yet
    later = timezone.now() + timedelta(seconds=settings.GENERATION_REDISPATCH_SECONDS + 1)
    assert recovery.recover(now=later).redispatched == 1
    assert sent(stub_broker) == [generation.id]
    generation.refresh_from_db()
    assert generation.dispatches == 2
    # The next copy waits twice as long.
    assert generation.redispatch_at - later == timedelta(
        seconds=2 * settings.GENERATION_REDISPATCH_SECONDS
    )
    assert not recovery.recover(now=later + timedelta(seconds=1))


def test_broker_down_at_submit_the_job_is_accepted_and_sent_later(tenant, stub_broker, monkeypatch):
    from imagehub import broker

    def down(**kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(broker, "send", down)
    response = tenant.client().post(
        "/v1/images/generations",
        {"prompt": "while the broker is down", "size": "64x64"},
        format="json",
        HTTP_PREFER="respond-async",
    )
    assert response.status_code == 202, response.content
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.status == "queued" and generation.redispatch_at <= timezone.now()
    monkeypatch.undo()  # the broker is back
    assert recovery.recover().redispatched == 1
    assert sent(stub_broker) == [generation.id]


def test_a_job_queued_past_the_queue_timeout_fails_and_releases(tenant, make_generation, settings):
    generation = make_generation()
    later = timezone.now() + timedelta(seconds=settings.GENERATION_QUEUE_TIMEOUT_SECONDS + 1)
    assert recovery.recover(now=later).queue_timeout == 1
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == ("failed", "queue_timeout")
    assert held(tenant) == 0


def test_heartbeat_vouches_only_for_this_workers_running_jobs(make_generation):
    mine, other = make_generation(), make_generation()
    assert lifecycle.generation_claim(generation_id=mine.id, worker="me:1")
    assert lifecycle.generation_claim(generation_id=other.id, worker="other:2")
    stale = timezone.now() - timedelta(seconds=10)
    Generation.objects.update(heartbeat_at=stale)
    heartbeat = Heartbeat(worker="me:1")
    with heartbeat.running(mine.id), heartbeat.running(other.id):
        heartbeat.tick()
    heartbeat.stop()
    assert Generation.objects.get(pk=mine.pk).heartbeat_at > stale
    assert Generation.objects.get(pk=other.pk).heartbeat_at == stale


def test_reconcile_reports_a_stale_hold_and_fix_releases_it(tenant, make_generation, settings):
    generation = make_generation()
    running_on_a_dead_worker(
        generation,
        silent=settings.GENERATION_TIME_LIMIT_SECONDS + settings.GENERATION_TAKEOVER_SECONDS + 5,
    )
    with pytest.raises(Exception, match="1 mismatch"):
        call_command("reconcile_ledger")
    call_command("reconcile_ledger", "--fix")
    generation.refresh_from_db()
    assert (generation.status, generation.error_code) == ("failed", "worker_lost")
    assert held(tenant) == 0
    call_command("reconcile_ledger")


def test_the_dashboard_counts_the_days_recoveries(make_generation, stub_broker, settings):
    from generations.selectors import job_counts

    taken_over, lost, resent, ordinary = (make_generation() for _ in range(4))
    running_on_a_dead_worker(taken_over)
    running_on_a_dead_worker(lost, attempts=3)
    recovery.recover()
    later = timezone.now() + timedelta(seconds=settings.GENERATION_REDISPATCH_SECONDS + 1)
    assert recovery.recover(now=later).redispatched >= 1
    counts = job_counts()
    assert counts["worker_lost_24h"] == 1
    assert counts["recovered_24h"] == Generation.objects.filter(recoveries__gt=0).count() >= 1
    assert counts["redispatched_24h"] == Generation.objects.filter(dispatches__gt=1).count() >= 1
    # A day later, none of them is counted.
    Generation.objects.update(created_at=timezone.now() - timedelta(days=1, seconds=1))
    assert job_counts()["recovered_24h"] == job_counts()["worker_lost_24h"] == 0
