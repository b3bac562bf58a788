"""Completion notices from workers to the web requests waiting on them.

A waiting request subscribes to its generation id *before* the job is enqueued, so no
notice can slip past. Notices travel in-process (embedded default), over Redis pub/sub,
or over PostgreSQL LISTEN/NOTIFY; every web process keeps one listener thread and fans
notices out to its local waiters. Waiters also re-read the row every few seconds, so a
notice lost to a reconnect delays a response instead of hanging it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

CHANNEL = "imagehub_generation_done"


class _Hub:
    """Local fan-out: generation id -> the events of the requests waiting on it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: dict[str, set[threading.Event]] = defaultdict(set)

    def add(self, generation_id: str, event: threading.Event) -> None:
        with self._lock:
            self._events[generation_id].add(event)

    def discard(self, generation_id: str, event: threading.Event) -> None:
        with self._lock:
            events = self._events.get(generation_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[generation_id]

    def deliver(self, generation_id: str) -> None:
        with self._lock:
            events = list(self._events.get(generation_id, ()))
        for event in events:
            event.set()


hub = _Hub()


class _Listener:
    """One background thread per process that feeds remote notices into the hub."""

    def __init__(self):
        self._started = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="imagehub-notify", daemon=True
                )
                self._thread.start()
        # Wait (briefly) for the subscription so the first waiter cannot miss its notice.
        self._started.wait(timeout=5)

    def stop(self) -> None:
        """Ask the thread to close its connection and end (within about a second)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                self.listen(self._started.set)
                backoff = 0.5
            except Exception:  # noqa: BLE001 - a listener must outlive any broken connection
                logger.warning(
                    "notice listener lost its connection; retrying in %.1fs", backoff, exc_info=True
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)

    def listen(self, ready) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _RedisListener(_Listener):
    def __init__(self, url: str):
        super().__init__()
        import redis

        self._client = redis.Redis.from_url(url)

    def publish(self, generation_id: str) -> None:
        self._client.publish(CHANNEL, generation_id)

    def listen(self, ready) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(CHANNEL)
        try:
            pubsub.get_message(timeout=5)  # consumes the subscribe confirmation
            ready()
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message and message.get("type") == "message":
                    hub.deliver(message["data"].decode())
        finally:
            pubsub.close()


class _PostgresListener(_Listener):
    def publish(self, generation_id: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, generation_id])

    def listen(self, ready) -> None:
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            ready()
            while not self._stopping.is_set():
                for notice in conn.notifies(timeout=1.0):
                    hub.deliver(notice.payload)


_backend: _Listener | None = None
_backend_chosen = False


def _choose() -> _Listener | None:
    from imagehub.broker import is_in_process

    choice = settings.NOTIFY_BACKEND
    if choice == "auto":
        if is_in_process():
            choice = "local"
        elif settings.REDIS_URL:
            choice = "redis"
        elif connection.vendor == "postgresql":
            choice = "postgres"
        else:
            choice = "local"
    if choice == "redis":
        return _RedisListener(settings.REDIS_URL)
    if choice == "postgres":
        return _PostgresListener()
    return None


def backend() -> _Listener | None:
    global _backend, _backend_chosen
    if not _backend_chosen:
        _backend = _choose()
        _backend_chosen = True
    return _backend


def publish(generation_id: str) -> None:
    """Tell every waiter, in any process, that this generation has finished (or, for an
    id like ``<id>:partial:<k>``, that a partial image is stored)."""
    hub.deliver(generation_id)
    remote = backend()
    if remote is not None:
        try:
            remote.publish(generation_id)
        except Exception:  # noqa: BLE001 - waiters fall back to re-reading the row
            logger.warning("could not publish completion of %s", generation_id, exc_info=True)


@contextlib.contextmanager
def subscription(generation_id: str, *more_ids: str) -> Iterator[threading.Event]:
    """One event, set by a notice for any of the ids (a streaming request also listens
    for its partial images, ``<id>:partial:<k>``)."""
    remote = backend()
    if remote is not None:
        remote.ensure_started()
    event = threading.Event()
    ids = (generation_id, *more_ids)
    for notice_id in ids:
        hub.add(notice_id, event)
    try:
        yield event
    finally:
        for notice_id in ids:
            hub.discard(notice_id, event)
