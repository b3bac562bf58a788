"""A worker process told to stop (SIGTERM) finishes the job in flight, takes no new one,
and exits cleanly; money settles once. Real process, real Redis broker, real database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import CreditEntry
from generations.models import Generation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
BROKER = "redis://127.0.0.1:6379/11"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_sigterm_finishes_the_job_in_flight(make_generation, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("a second process needs the PostgreSQL test database")
    from dramatiq import Message
    from dramatiq.brokers.redis import RedisBroker

    def queued(prompt: str) -> Generation:
        # A few seconds of work on a CPU: long enough to be in flight at the signal.
        return make_generation(prompt=prompt, n=1, width=128, height=128, steps=30, seed=1)

    queue = f"gpu-shutdown-{uuid.uuid4().hex[:6]}"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DRAMATIQ_BROKER_URL": BROKER,
        "IMAGEHUB_QUEUE": queue,
        "IMAGEHUB_DATA_DIR": str(tmp_path),
        "IMAGEHUB_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "IMAGEHUB_DEMO_MODELS_DIR": str(settings.DEMO_MODELS_DIR),
        "DJANGO_SECRET_KEY": "shutdown-test",
        "IMAGEHUB_WARMUP_MODELS": "demo-sd",
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runworker", "--threads", "1"],
        env=env,
        cwd=ROOT,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    broker = RedisBroker(url=BROKER)
    broker.declare_queue(queue)

    def send(generation: Generation) -> None:
        broker.enqueue(
            Message(
                queue_name=queue,
                actor_name="generations.generate",
                args=(generation.id,),
                kwargs={},
                options={},
            )
        )

    try:
        first = queued("in flight")
        send(first)
        _wait_for(
            lambda: Generation.objects.get(pk=first.pk).status == "running",
            90,
            f"the worker to start the job:\n{log.read_text()}",
        )
        worker.send_signal(signal.SIGTERM)
        second = queued("after the signal")
        send(second)
        assert worker.wait(timeout=120) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
        broker.flush(queue)
        broker.close()
    first.refresh_from_db()
    assert first.status == "succeeded" and first.images.count() == 1, log.read_text()
    assert list(
        CreditEntry.objects.filter(generation_id=first.id).values_list("kind", flat=True)
    ) == ["hold", "capture"]
    assert Generation.objects.get(pk=second.pk).status == "queued"  # left for the next worker
    text = log.read_text()
    assert "letting jobs in flight finish" in text and "worker stopped" in text
