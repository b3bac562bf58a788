"""runworker: a GPU worker process consuming generation jobs from the broker.

    manage.py runworker [--threads N] [--queues gpu ...] [--device cuda:0]

Run one process per GPU (pin it with --device or CUDA_VISIBLE_DEVICES). The process loads
each model once and keeps it. SIGTERM or Ctrl-C stops taking new jobs, lets the jobs in
flight finish, then exits. Each process vouches for its running jobs with a heartbeat and
runs the recovery loop (generations/worker/liveness.py).
"""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run a worker process that executes generations."

    def add_arguments(self, parser):
        parser.add_argument(
            "--threads",
            type=int,
            # Threads mostly wait: for room on the device, for their batch, or on the
            # encoder and the storage while the device runs the next job.
            default=settings.WORKER_THREADS,
            help="worker threads (default 16 with batching, else 3; jobs are claimed only "
            "while the device has room: IMAGEHUB_BATCH_LOOKAHEAD_IMAGES)",
        )
        parser.add_argument("--queues", nargs="+", default=[settings.DRAMATIQ_QUEUE])
        parser.add_argument("--device", help="torch device, e.g. cuda:1 (default: IMAGEHUB_DEVICE)")
        parser.add_argument(
            "--metrics-port", type=int, help="serve Prometheus metrics on this port"
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=int,
            default=settings.GENERATION_TIME_LIMIT_SECONDS,
            help="seconds to let jobs in flight finish after SIGTERM",
        )

    def handle(self, *args, threads, queues, device, shutdown_timeout, metrics_port, **options):
        from imagehub.broker import broker, is_in_process

        if is_in_process():
            raise CommandError(
                "DRAMATIQ_BROKER_URL is not set: with the embedded default the web process "
                "runs its own worker threads. Set redis://… or amqp://… to run workers apart."
            )
        if device:
            settings.DEVICE = device
        broker.emit_after("process_boot")
        if metrics_port:
            from prometheus_client import start_http_server

            start_http_server(metrics_port)
            logger.info("metrics on :%d/metrics", metrics_port)
        from generations.worker.process import worker_start, worker_stop
        from generations.worker.runtime import warm_up

        warm_up(settings.WARMUP_MODELS)
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        worker = worker_start(queues=queues, threads=threads, poll_ms=settings.WORKER_POLL_MS)
        logger.info(
            "worker up: queues=%s threads=%d device=%s broker=%s",
            ",".join(queues),
            threads,
            settings.DEVICE,
            type(broker).__name__,
        )
        # Wake up now and then: the kernel may deliver SIGTERM to any thread (torch's
        # included), and Python runs the handler only when the main thread wakes.
        while not stopping.wait(timeout=0.5):
            pass
        logger.info("stopping: letting jobs in flight finish (up to %ds)", shutdown_timeout)
        worker_stop(worker, timeout_seconds=shutdown_timeout)
        broker.close()
        logger.info("worker stopped")
