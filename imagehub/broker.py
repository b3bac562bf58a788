"""Dramatiq broker set-up.

DRAMATIQ_BROKER_URL=redis://… or amqp://… selects a real broker whose messages separate
worker processes consume (`manage.py runworker`). Unset, the web process keeps an
in-process StubBroker and starts worker threads of its own on first use: the embedded
default of `make run`.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from django.conf import settings
from django.db import close_old_connections
from dramatiq.brokers.stub import StubBroker

logger = logging.getLogger("imagehub.broker")


class DjangoConnections(dramatiq.Middleware):
    """Workers are long-lived threads: drop stale or broken DB connections around jobs."""

    def before_process_message(self, broker, message):
        close_old_connections()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        close_old_connections()

    after_skip_message = after_process_message


def _build() -> dramatiq.Broker:
    url = settings.DRAMATIQ_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=url)
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url)
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(DjangoConnections())
    dramatiq.set_broker(broker)
    return broker


broker = _build()
_local_worker: dramatiq.Worker | None = None
_local_lock = threading.Lock()


def is_in_process() -> bool:
    return isinstance(broker, StubBroker)


def catalog_queues() -> list[str]:
    from generations.catalog import queues

    return queues()


def ensure_local_worker() -> None:
    """Start the in-process worker threads once (embedded default only); they serve
    every queue of the catalog."""
    global _local_worker
    if not is_in_process() or _local_worker is not None:
        return
    with _local_lock:
        if _local_worker is None:
            for queue in catalog_queues():
                broker.declare_queue(queue)
            worker = dramatiq.Worker(
                broker,
                queues=set(catalog_queues()),
                worker_threads=settings.INPROCESS_WORKER_THREADS,
                worker_timeout=100,
            )
            worker.start()
            _local_worker = worker
            logger.info(
                "started in-process worker (%d thread(s)) on queue %s",
                settings.INPROCESS_WORKER_THREADS,
                settings.DRAMATIQ_QUEUE,
            )


def start_embedded_worker() -> None:
    """For web servers on the embedded default: start the worker threads and warm the
    engine in the background, so the first request does not pay for importing torch."""
    if not is_in_process():
        return
    ensure_local_worker()

    def warm():
        from generations.engine import warm_up

        warm_up(settings.WARMUP_MODELS)

    threading.Thread(target=warm, name="imagehub-warm-up", daemon=True).start()


def stop_local_worker() -> None:
    global _local_worker
    with _local_lock:
        if _local_worker is not None:
            _local_worker.stop()
            _local_worker = None
