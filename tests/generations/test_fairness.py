"""Fair share: one tenant's backlog does not make another tenant's request wait behind
it; weights and priority tiers divide a shared queue as the operator set them."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from generations import lifecycle, services
from generations.catalog import get_model
from generations.fairness import queue_position
from generations.models import Generation
from generations.types import GenerationRequest
from tests.jobs import finish_by_hand

pytestmark = pytest.mark.django_db(transaction=True)


def submit(tenant, count: int = 1) -> list[Generation]:
    request = GenerationRequest(
        spec=get_model("demo-sd"),
        prompt="fair",
        negative_prompt="",
        n=1,
        width=64,
        height=64,
        steps=2,
        guidance_scale=5.0,
        quality="auto",
        response_format="b64_json",
        output_format="png",
    )
    return [
        services.generation_create(order=request, organization=tenant.org, api_key=tenant.key)
        for _ in range(count)
    ]


def claim_and_finish(message: Generation, worker: str = "w:1") -> Generation:
    """A worker takes the next job for this message, and finishes it at once."""
    return finish_by_hand(message.id, worker)


def test_a_single_request_does_not_wait_behind_another_tenants_backlog(
    tenant, other_tenant, stub_broker
):
    backlog = submit(tenant, 30)
    (lone,) = submit(other_tenant)
    assert queue_position(lone) == 1  # one of the backlog, then this one
    # The messages arrive in order; the second one already serves the other tenant.
    order = [claim_and_finish(message).organization_id for message in [*backlog, lone][:3]]
    assert order == [tenant.org.pk, other_tenant.org.pk, tenant.org.pk]
    assert Generation.objects.get(pk=lone.pk).status == "succeeded"
    # Every message still finds a job: nothing is left behind.
    for message in [*backlog, lone][3:]:
        claim_and_finish(message)
    assert not Generation.objects.filter(status="queued").exists()


def test_weights_divide_the_queue(tenant, other_tenant, stub_broker):
    other_tenant.org.queue_weight = 3
    other_tenant.org.save()
    light, heavy = submit(tenant, 12), submit(other_tenant, 12)
    messages = [m for pair in zip(light, heavy, strict=True) for m in pair]
    served = [claim_and_finish(m).organization_id for m in messages[:8]]
    assert served.count(other_tenant.org.pk) == 6 and served.count(tenant.org.pk) == 2


def test_a_higher_priority_tier_goes_first(tenant, other_tenant, stub_broker):
    other_tenant.org.queue_priority = 1
    other_tenant.org.save()
    early = submit(tenant, 3)
    late = submit(other_tenant, 2)
    assert queue_position(late[0]) == 0 and queue_position(early[0]) == 2
    served = [claim_and_finish(m).organization_id for m in early]
    assert served == [other_tenant.org.pk, other_tenant.org.pk, tenant.org.pk]


def test_two_workers_claiming_at_once_serve_both_tenants(tenant, other_tenant, stub_broker):
    backlog = submit(tenant, 20)
    (lone,) = submit(other_tenant)
    claimed: list[str] = []

    def worker(name: str, messages: list[Generation]) -> None:
        try:
            for message in messages:
                claimed.append(lifecycle.generation_claim(generation_id=message.id, worker=name))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(f"w:{k}", backlog[k : k + 2 * 2 : 2])) for k in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 4 and len(set(claimed)) == 4  # no job claimed twice
    assert lone.pk in claimed  # within the first claims, not after the 20


def test_a_message_whose_job_another_worker_took_claims_a_queued_one(tenant, stub_broker):
    """Fair share hands a message's worker another job than the one it names; that job's
    own message then finds its job running: it takes a queued job instead, so no job is
    left without a message (until the recovery loop's re-send, a minute later)."""
    first, second = submit(tenant, 2)
    # The message of `second` came first, and its worker was given `first` (the pick).
    assert lifecycle.generation_claim(generation_id=first.id, worker="w:1") == first.id
    # `first`'s own message: its job runs on a live worker; `second` waits for a message.
    assert lifecycle.generation_claim(generation_id=first.id, worker="w:2") == second.id
    assert lifecycle.generation_claim(generation_id=second.id, worker="w:3") is None
    assert set(Generation.objects.values_list("status", flat=True)) == {"running"}


@pytest.mark.django_db(transaction=True)
def test_a_newcomer_runs_within_a_batch_of_the_device_freeing(tenant, other_tenant, settings):
    """Tenant B's backlog waits for the device when tenant A's one job arrives: the worker
    claims only a batch ahead of its device, so A's job is picked (fair share) as soon as
    the device takes the batch that was forming, not after B's whole backlog was bound to
    the worker's threads."""
    from generations.worker import runtime

    settings.BATCHING = True
    url = "/v1/images/generations"
    body = {"model": "demo-sd", "size": "64x64", "num_inference_steps": 2}
    b, a = other_tenant.client(), tenant.client()

    def submit(client, **fields) -> str:
        response = client.post(url, {**body, **fields}, format="json", HTTP_PREFER="respond-async")
        assert response.status_code == 202, response.content
        return response.json()["id"]

    batcher = runtime.batcher()
    batcher.pause()  # the device is busy: nothing starts until resume()
    try:
        backlog = [submit(b, prompt=f"b{i}", n=4) for i in range(8)]  # 2 jobs per batch of 8
        # A batch's worth is claimed ahead of the device; the rest stays queued.
        _wait(lambda: Generation.objects.filter(pk__in=backlog, status="running").count() == 2)
        lone = submit(a, prompt="a", n=1)
        time.sleep(0.5)  # a greedy worker would have claimed B's whole backlog by now
        running = Generation.objects.filter(pk__in=backlog, status="running").count()
        assert running == 2, f"{running} of B's jobs claimed while the device was busy"
    finally:
        batcher.resume()
    # Every job is claimed by some message, though the picks differ from the names.
    _wait(lambda: not Generation.objects.filter(status__in=["queued", "running"]).exists())
    started = dict(Generation.objects.values_list("id", "started_at"))
    after = [g for g in backlog if started[g] > started[lone]]
    # Ahead of A: the batch that was forming (2 jobs); B's other 6 come after it.
    assert len(after) == 6, f"A started after {8 - len(after)} of B's 8 jobs"
    assert Generation.objects.get(pk=lone).status == "succeeded"


def _wait(condition, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
