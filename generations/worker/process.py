"""Starting and stopping a worker: the Dramatiq consumer threads and the background loops
that every worker process runs beside them (recovery, model probe, heartbeat). One
sequence for both kinds of worker: the separate `manage.py runworker` process and the
threads of the embedded default inside the web process (generations/worker/embedded.py).
"""

from __future__ import annotations

import logging

import dramatiq

from generations.worker.housekeeping import housekeeping
from generations.worker.liveness import heartbeat, recovery_loop
from generations.worker.probe import model_probe
from imagehub.broker import broker

logger = logging.getLogger(__name__)


def worker_start(*, queues: list[str], threads: int, poll_ms: int) -> dramatiq.Worker:
    """Declare the queues (a model group's queue has no actor declared on it), start
    `threads` consumers on them, then the recovery loop and the model probe."""
    for queue in queues:
        broker.declare_queue(queue)
    worker = dramatiq.Worker(
        broker,
        queues=set(queues),
        worker_threads=threads,
        # How long an idle consumer may sleep between polls. Dramatiq's Redis consumer
        # polls with exponential backoff up to this bound, which adds up to that much
        # queue latency to a request arriving at an idle worker.
        worker_timeout=poll_ms,
    )
    worker.start()
    recovery_loop.start()
    model_probe.start_for(queues)
    housekeeping.start()
    return worker


def worker_stop(worker: dramatiq.Worker | None, *, timeout_seconds: float = 600) -> None:
    """Stop taking jobs, let the jobs in flight finish (up to `timeout_seconds`), then
    stop the loops; the heartbeat last, so running jobs stay vouched for until the end."""
    if worker is not None:
        worker.stop(timeout=int(timeout_seconds * 1000))
    recovery_loop.stop()
    model_probe.stop()
    housekeeping.stop()
    heartbeat.stop()
