"""A worker process's two background threads that make accepted jobs durable.

Heartbeat: every GENERATION_HEARTBEAT_SECONDS one UPDATE renews `heartbeat_at` of every
job this process is running. A job whose heartbeat is older than
GENERATION_TAKEOVER_SECONDS has lost its worker (killed, frozen, cut off from the
database) and is taken over; a job that runs past the time limit stops being vouched
for, so a thread stuck in native code cannot hold a job (and its credits) for ever.

Recovery: every RECOVERY_INTERVAL_SECONDS the process runs one pass of
generations/recovery.py: takeovers, messages sent again, queue timeouts. Every worker
process runs it (the embedded worker of `make run` too): there is no extra daemon to
forget, and SKIP LOCKED keeps the passes of many workers from colliding.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

from django.conf import settings

from generations import lifecycle, recovery
from imagehub.db import reconnect

logger = logging.getLogger(__name__)

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


class _Loop:
    """A daemon thread that calls `tick` every `interval()` seconds until stopped."""

    name = "imagehub-loop"

    def __init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def interval(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def tick(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval()):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the loop must outlive any database outage
                logger.warning("%s: pass failed; trying again", self.name, exc_info=True)
                reconnect()
        reconnect()  # hand this thread's connection back


class Heartbeat(_Loop):
    name = "imagehub-heartbeat"

    def __init__(self, worker: str = WORKER_NAME):
        super().__init__()
        self.worker = worker
        self._jobs: dict[str, float] = {}  # generation id -> when this process claimed it
        self._jobs_lock = threading.Lock()

    def interval(self) -> float:
        return settings.GENERATION_HEARTBEAT_SECONDS

    @contextlib.contextmanager
    def running(self, generation_id: str):
        """Vouch for the job while the block runs."""
        with self._jobs_lock:
            self._jobs[generation_id] = time.monotonic()
        self.start()
        try:
            yield
        finally:
            with self._jobs_lock:
                self._jobs.pop(generation_id, None)

    def vouched(self) -> list[str]:
        limit = settings.GENERATION_TIME_LIMIT_SECONDS + settings.GENERATION_HEARTBEAT_SECONDS
        now = time.monotonic()
        with self._jobs_lock:
            return [job for job, since in self._jobs.items() if now - since < limit]

    def tick(self) -> None:
        jobs = self.vouched()
        if jobs:
            lifecycle.generation_heartbeat(generation_ids=jobs, worker=self.worker)


class RecoveryLoop(_Loop):
    name = "imagehub-recovery"

    def interval(self) -> float:
        return settings.RECOVERY_INTERVAL_SECONDS

    def tick(self) -> None:
        recovery.recover()


heartbeat = Heartbeat()
recovery_loop = RecoveryLoop()
