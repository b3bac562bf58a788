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

import dramatiq
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger("generations.worker")


class Command(BaseCommand):
    help = "Run a worker process that executes generations."

    def add_arguments(self, parser):
        parser.add_argument(
            "--threads",
            type=int,
            # With batching, threads mostly wait for the batcher, which forms the batches.
            default=8 if settings.BATCHING else 1,
            help="jobs claimed at once (default 8 with batching, else 1)",
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
        for queue in queues:  # a model group's queue has no actor declared on it
            broker.declare_queue(queue)
        if metrics_port:
            from prometheus_client import start_http_server

            start_http_server(metrics_port)
            logger.info("metrics on :%d/metrics", metrics_port)
        from generations.worker.liveness import heartbeat, recovery_loop
        from generations.worker.probe import model_probe
        from generations.worker.runtime import warm_up

        warm_up(settings.WARMUP_MODELS)
        worker = dramatiq.Worker(
            broker,
            queues=set(queues),
            worker_threads=threads,
            # How long an idle consumer may sleep between polls. Dramatiq's Redis consumer
            # polls with exponential backoff up to this bound (1 s by default), which would
            # add up to a second of queue latency to a request arriving at an idle worker.
            worker_timeout=settings.WORKER_POLL_MS,
        )
        stopping = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.set())
        worker.start()
        recovery_loop.start()
        model_probe.start_for(queues)
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
        worker.stop(timeout=shutdown_timeout * 1000)
        recovery_loop.stop()
        model_probe.stop()
        heartbeat.stop()
        broker.close()
        logger.info("worker stopped")
