"""A web server told to stop (SIGTERM: a deploy, a scale-down) while clients wait for
their images: with a graceful timeout longer than the waits, every waiting client gets
its images; whatever a shorter one cuts off anyway, a retry with the same
Idempotency-Key gets, charged once."""

from __future__ import annotations

import signal
import threading
import uuid

import pytest
import requests

from accounts.models import CreditEntry, IdempotencyKey
from generations.models import Generation
from tests.chaos.conftest import (
    assert_all_succeeded,
    assert_money_moved_once,
    broker_for,
    job_body,
    session,
    wait_finished,
)
from tests.processes import free_port, wait_for, wait_worker

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

CLIENTS = 5
SYNC_WAIT = 60  # IMAGEHUB_SYNC_WAIT_SECONDS of the web servers here


class Waiter(threading.Thread):
    """One client in a sync wait: POST with an Idempotency-Key, keep what comes back."""

    def __init__(self, base: str, secret: str, index: int, key: str | None = None):
        super().__init__(daemon=True)
        self.base, self.secret, self.index = base, secret, index
        self.key = key or str(uuid.uuid4())
        self.response: requests.Response | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        client = session(self.secret)
        client.headers["Connection"] = "close"
        try:
            self.response = client.post(
                f"{self.base}/v1/images/generations",
                json=job_body(self.index, n=2),
                headers={"Idempotency-Key": self.key},
                timeout=SYNC_WAIT + 60,
            )
        except requests.RequestException as exc:
            self.error = exc

    def got_images(self) -> bool:
        return (
            self.response is not None
            and self.response.status_code == 200
            and len(self.response.json()["data"]) == 2
        )


def waiting(base: str, secret: str, first: int, worker) -> list[Waiter]:
    """CLIENTS clients in sync waits, with the worker frozen so that each is still
    waiting (its job queued) when the test lets go."""
    worker.signal(signal.SIGSTOP)
    waiters = [Waiter(base, secret, first + i) for i in range(CLIENTS)]
    for waiter in waiters:
        waiter.start()
    wait_for(
        lambda: IdempotencyKey.objects.filter(key__in=[w.key for w in waiters]).count() == CLIENTS,
        60,
        "every request to be accepted and waiting",
    )
    return waiters


def generation_of(waiter: Waiter) -> Generation:
    [reference] = IdempotencyKey.objects.filter(key=waiter.key).values_list("reference", flat=True)
    return Generation.objects.get(pk=reference)


def test_web_sigterm_during_sync_waits(deployment, tenant):
    stack = deployment(broker_for("redis"), IMAGEHUB_SYNC_WAIT_SECONDS=SYNC_WAIT)
    port = free_port()
    web = stack.web(port=port, graceful_timeout=SYNC_WAIT + 30, wait=False)
    worker = stack.worker(wait=False)
    web.wait()
    wait_worker(worker)

    # A graceful timeout longer than the waits: the server stops taking requests, and
    # answers every one it has once its images are there.
    patient = waiting(web.base, tenant.secret, 0, worker)
    web.process.signal(signal.SIGTERM)
    wait_for(lambda: "Handling signal: term" in web.process.text(), 30, "gunicorn to stop")
    worker.signal(signal.SIGCONT)
    for waiter in patient:
        waiter.join(timeout=SYNC_WAIT + 90)
    assert [w.got_images() for w in patient] == [True] * CLIENTS, [
        (w.response.status_code if w.response is not None else w.error) for w in patient
    ]
    assert web.process.wait(60) == 0, web.process.tail()

    # A graceful timeout shorter than the waits (1 s): the server cuts them off.
    web = stack.web(port=port, graceful_timeout=1)
    cut = waiting(web.base, tenant.secret, 100, worker)
    web.process.signal(signal.SIGTERM)
    for waiter in cut:
        waiter.join(timeout=60)
    assert all(w.response is None and w.error is not None for w in cut), [
        (w.response, w.error) for w in cut
    ]
    worker.signal(signal.SIGCONT)
    assert web.process.wait(60) is not None, web.process.tail()
    # Their jobs go on, and are charged once delivered...
    rows = wait_finished([generation_of(w).id for w in cut], stack)
    assert_all_succeeded(rows, stack)

    # ... to the client that asks again with the same key: the same generation, its images.
    web = stack.web(port=port)
    retries = [Waiter(web.base, tenant.secret, w.index, key=w.key) for w in cut]
    for retry in retries:
        retry.start()
    for retry, first in zip(retries, cut, strict=True):
        retry.join(timeout=SYNC_WAIT + 30)
        assert retry.got_images(), (retry.response, retry.error)
        assert retry.response.headers["Idempotent-Replayed"] == "true"
        assert retry.response.json()["id"] == generation_of(first).id

    # One generation per client, charged once.
    everything = list(Generation.objects.filter(organization=tenant.org))
    assert len(everything) == 2 * CLIENTS
    for generation in everything:
        assert list(
            CreditEntry.objects.filter(generation_id=generation.id)
            .order_by("pk")
            .values_list("kind", flat=True)
        ) == ["hold", "capture"]
    assert_money_moved_once([g.id for g in everything], tenant.org)
