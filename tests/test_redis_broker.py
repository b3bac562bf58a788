"""The Redis broker's consumers wait for a wake-up instead of polling (imagehub/redis_broker.py),
against a real Redis: a message sent to an idle worker is fetched at once, an idle consumer
makes one call per timeout, and what Dramatiq does besides (delays, a message without its
wake-up) still works."""

from __future__ import annotations

import socket
import threading
import time
import uuid

import dramatiq
import pytest

from imagehub.redis_broker import WakingRedisBroker

REDIS_URL = "redis://127.0.0.1:6379/11"


def _redis_running() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


pytestmark = pytest.mark.skipif(not _redis_running(), reason="Redis is not running")


@pytest.fixture
def broker():
    broker = WakingRedisBroker(url=REDIS_URL, namespace=f"test-wake-{uuid.uuid4().hex[:8]}")
    yield broker
    for key in broker.client.scan_iter(f"{broker.namespace}*"):
        broker.client.delete(key)
    broker.close()


def _message(queue: str) -> dramatiq.Message:
    return dramatiq.Message(queue_name=queue, actor_name="noop", args=(), kwargs={}, options={})


def test_an_idle_consumer_fetches_a_new_message_long_before_its_timeout(broker):
    broker.declare_queue("jobs")
    consumer = broker.consume("jobs", prefetch=1, timeout=10_000)
    got = []

    def consume():
        started = time.monotonic()
        while time.monotonic() - started < 15:
            message = next(consumer)
            if message is not None:
                got.append((message, time.monotonic()))
                return

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(3)  # idle: Dramatiq's consumer now sleeps seconds between polls
    sent_at = time.monotonic()
    broker.enqueue(_message("jobs"))
    thread.join(timeout=20)
    assert got, "the message was not fetched"
    # Dramatiq's polling consumer, idle this long, sleeps 2-4 s between polls.
    assert got[0][1] - sent_at < 1.0
    consumer.ack(got[0][0])
    consumer.close()


def test_an_idle_consumer_makes_one_fetch_per_timeout(broker, monkeypatch):
    broker.declare_queue("jobs")
    consumer = broker.consume("jobs", prefetch=1, timeout=500)
    fetches = []
    real_fetch = broker.do_fetch

    def counting_fetch(*args):
        fetches.append(time.monotonic())
        return real_fetch(*args)

    monkeypatch.setattr(broker, "do_fetch", counting_fetch)
    started = time.monotonic()
    while time.monotonic() - started < 2:
        assert next(consumer) is None
    # About 2 s / 0.5 s; Dramatiq's consumer with a 10 ms bound fetches ~200 times.
    assert 2 <= len(fetches) <= 6
    consumer.close()


def test_a_message_without_its_wake_up_is_fetched_at_the_next_timeout(broker):
    broker.declare_queue("jobs")
    message = _message("jobs").copy(options={"redis_message_id": str(uuid.uuid4())})
    # What a lost wake-up looks like: the message is in Redis, no token is.
    broker.do_enqueue("jobs", message.options["redis_message_id"], message.encode())
    consumer = broker.consume("jobs", prefetch=1, timeout=300)
    started = time.monotonic()
    fetched = None
    while fetched is None and time.monotonic() - started < 5:
        fetched = next(consumer)
    assert fetched is not None and fetched.message_id == message.message_id
    consumer.ack(fetched)
    consumer.close()


def test_a_worker_runs_sent_and_delayed_messages(broker):
    done: list[str] = []
    finished = threading.Event()

    @dramatiq.actor(broker=broker, queue_name="work", actor_name=f"record-{broker.namespace}")
    def record(tag: str) -> None:
        done.append(tag)
        if len(done) == 3:
            finished.set()

    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=1000)
    worker.start()
    try:
        record.send("now")
        record.send_with_options(args=("later",), delay=300)
        record.send("also now")
        assert finished.wait(timeout=15), done
    finally:
        worker.stop()
    assert sorted(done) == ["also now", "later", "now"]
    assert done[-1] == "later"
