"""Every database connection dropped at once (a failover, a PgBouncer restart,
pg_terminate_backend) while jobs run and clients poll: a request in flight may fail,
with a JSON 503, at most one per blip; every job finishes; money moves once."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from django.db import connection

from generations.models import Generation
from tests.chaos.conftest import (
    TERMINAL,
    assert_all_succeeded,
    assert_money_moved_once,
    broker_for,
    job_body,
    session,
    submit_async,
    wait_finished,
)
from tests.processes import wait_for, wait_worker

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

BLIPS = 3
CLIENTS = 3


def drop_every_connection() -> int:
    """Terminate every other backend connected to the (test) database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


class Client(threading.Thread):
    """Submits a job, polls it to the end, and again, until told to stop; keeps every
    answer (or the exception that replaced it)."""

    def __init__(self, base: str, secret: str, number: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.base, self.secret, self.number, self.stop = base, secret, number, stop
        # (when it ended, what, status or None, content type, body or exception)
        self.answers: list[tuple[float, str, int | None, str, object]] = []
        self.ids: list[str] = []

    def record(self, what: str, call) -> dict | None:
        try:
            response = call()
        except requests.RequestException as exc:
            self.answers.append((time.monotonic(), what, None, "", repr(exc)))
            return None
        when = time.monotonic()
        try:
            body = response.json()
        except ValueError:
            body = response.text[:300]
        content_type = response.headers.get("Content-Type", "")
        self.answers.append((when, what, response.status_code, content_type, body))
        return body if response.status_code < 300 else None

    def run(self) -> None:
        client = session(self.secret)
        index = 0
        while not self.stop.is_set():
            index += 1
            body = job_body(self.number * 1000 + index, size=128, steps=8)
            made = self.record("create", lambda body=body: submit_async(client, self.base, body))
            if made is None:
                continue
            self.ids.append(made["id"])
            url = f"{self.base}/v1/images/generations/{made['id']}"
            while not self.stop.is_set():
                polled = self.record("poll", lambda url=url: client.get(url, timeout=60))
                if polled is not None and polled["status"] in TERMINAL:
                    break
                time.sleep(0.1)


def test_dropped_connections_cost_at_most_one_request_per_blip(deployment, tenant):
    stack = deployment(broker_for("redis"))
    web, worker = stack.web(wait=False, workers=2), stack.worker(wait=False)
    web.wait()
    wait_worker(worker)
    stop = threading.Event()
    clients = [Client(web.base, tenant.secret, number, stop) for number in range(CLIENTS)]
    for client in clients:
        client.start()
    blips = []
    try:
        for _ in range(BLIPS):
            # Mid-flow: jobs running on the worker while the clients poll.
            wait_for(
                lambda: Generation.objects.filter(status="running").exists(),
                120,
                lambda: f"a running job\n{stack.logs()}",
                interval=0.05,
            )
            blips.append(time.monotonic())
            assert drop_every_connection() > 0
            time.sleep(2)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=120)

    answers = sorted(answer for client in clients for answer in client.answers)
    assert len([a for a in answers if a[1] == "create" and a[2] == 202]) >= CLIENTS
    not_json = [a for a in answers if a[2] is None or not a[3].startswith("application/json")]
    assert not not_json, not_json  # no HTML error page, no dropped connection
    failed = [a for a in answers if a[2] >= 400]
    assert all(
        status == 503 and body["error"]["code"] == "database_unavailable"
        for _, _, status, _, body in failed
    ), failed
    # A request fails only if it was in flight when its connection died: at most one per
    # blip (and none before the first).
    per_blip = [
        [a for a in failed if start <= a[0] < end]
        for start, end in zip(blips, [*blips[1:], float("inf")], strict=True)
    ]
    assert not [a for a in failed if a[0] < blips[0]], failed
    assert all(len(each) <= 1 for each in per_blip), [
        [(what, body["error"]["message"][:60]) for _, what, _, _, body in each] for each in per_blip
    ]

    # Every job finishes, those whose create request failed after all included.
    everything = Generation.objects.filter(organization=tenant.org).values_list("id", flat=True)
    rows = wait_finished(list(everything), stack)
    assert_all_succeeded(rows, stack)
    assert_money_moved_once([row.id for row in rows], tenant.org)
