"""The embedded default: worker threads inside the web process (no broker URL set).

They consume the in-process StubBroker's queues, one set of threads for every queue of
the catalog, and start with the web server (imagehub.wsgi) or, in tests and management
commands, with the first job sent. The recovery loop runs beside them: the in-process
broker forgets its messages when the process stops, and the loop sends the jobs still
queued in the database again after a restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import dramatiq
from django.conf import settings

from generations.catalog import queues
from generations.worker.process import worker_start, worker_stop
from imagehub.broker import broker, is_in_process

logger = logging.getLogger(__name__)

_local_worker: dramatiq.Worker | None = None
_local_lock = threading.Lock()
_paused = False


def ensure_started() -> None:
    """Start the in-process worker threads once (embedded default only)."""
    global _local_worker
    if not is_in_process() or _local_worker is not None or _paused:
        return
    with _local_lock:
        if _local_worker is None and not _paused:
            _local_worker = worker_start(
                queues=queues(), threads=settings.INPROCESS_WORKER_THREADS, poll_ms=100
            )
            logger.info(
                "started in-process worker (%d thread(s)) on queues %s",
                settings.INPROCESS_WORKER_THREADS,
                ",".join(queues()),
            )


def start_with_server() -> None:
    """For web servers on the embedded default: start the worker threads and warm the
    engine in the background, so the first request does not pay for importing torch."""
    if not is_in_process():
        return
    ensure_started()

    def warm():
        from generations.worker.runtime import warm_up  # imports torch

        warm_up(settings.WARMUP_MODELS)

    threading.Thread(target=warm, name="imagehub-warm-up", daemon=True).start()


def stop() -> None:
    global _local_worker
    with _local_lock:
        worker_stop(_local_worker)
        _local_worker = None


def busy() -> bool:
    """Whether the in-process worker has messages it has not finished with (waiting,
    prefetched or running; retries waiting out their delay do not count). False when no
    worker consumes the in-process broker."""
    worker = _local_worker
    if worker is None or _paused:
        return False
    if worker.work_queue.unfinished_tasks:  # handed to its threads, not yet done
        return True
    queues = getattr(broker, "queues", {})  # waiting on the in-process broker
    return any(
        queues[name].qsize()
        for name in list(worker.consumers)
        if name in queues and not name.endswith(".DQ")
    )


@contextlib.contextmanager
def paused():
    """No in-process worker inside the block: messages sent meanwhile stay on the
    in-process broker's queues (for maintenance, and for tests that deliver them by
    hand). The worker starts again with the next message sent after the block."""
    global _paused
    stop()
    _paused = True
    try:
        yield broker
    finally:
        _paused = False
