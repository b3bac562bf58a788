"""Completion notices reach waiters through each transport, without polling."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from django.db import connection

from generations import notify


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _deliver_from_another_thread(listener, generation_id: str) -> None:
    def publish():
        listener.publish(generation_id)
        connection.close()

    thread = threading.Thread(target=publish)
    thread.start()
    thread.join()


def _assert_woken(listener) -> None:
    listener.ensure_started()
    event = threading.Event()
    notify.hub.add("gen_remote", event)
    try:
        started = time.monotonic()
        _deliver_from_another_thread(listener, "gen_remote")
        assert event.wait(5), "the notice never arrived"
        assert time.monotonic() - started < 2
    finally:
        notify.hub.discard("gen_remote", event)
        listener.stop()


def test_local_hub_wakes_only_the_right_waiter():
    mine, other = threading.Event(), threading.Event()
    notify.hub.add("gen_a", mine)
    notify.hub.add("gen_b", other)
    notify.hub.deliver("gen_a")
    assert mine.is_set() and not other.is_set()
    notify.hub.discard("gen_a", mine)
    notify.hub.discard("gen_b", other)


@pytest.mark.skipif(not _reachable(6379), reason="Redis is not running on 127.0.0.1:6379")
def test_redis_pubsub():
    _assert_woken(notify._RedisListener("redis://127.0.0.1:6379/12"))


@pytest.mark.django_db(transaction=True)
def test_postgres_listen_notify():
    if connection.vendor != "postgresql":
        pytest.skip("the test database is not PostgreSQL")
    _assert_woken(notify._PostgresListener())
