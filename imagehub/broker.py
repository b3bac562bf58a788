"""Dramatiq broker set-up.

DRAMATIQ_BROKER_URL=redis://… or amqp://… selects a real broker whose messages separate
worker processes consume (`manage.py runworker`). Unset, the broker is an in-process
StubBroker whose messages worker threads inside the web process consume (the embedded
default of `make run`; generations/worker/embedded.py starts them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dramatiq
from django.conf import settings
from django.db import close_old_connections
from dramatiq.brokers.stub import StubBroker

logger = logging.getLogger(__name__)


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
        from imagehub.redis_broker import WakingRedisBroker

        broker = WakingRedisBroker(url=url)
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
_server_start: list[Callable[[], None]] = []
_before_send: list[Callable[[], None]] = []


def is_in_process() -> bool:
    return isinstance(broker, StubBroker)


def send(*, queue_name: str, actor_name: str, args: tuple = ()) -> None:
    """Put a message for an actor on a queue, by name: the sender need not import the
    actor (nor the worker code behind it)."""
    for function in _before_send:
        function()
    broker.declare_queue(queue_name)
    broker.enqueue(
        dramatiq.Message(
            queue_name=queue_name, actor_name=actor_name, args=args, kwargs={}, options={}
        )
    )


def before_send(function: Callable[[], None]) -> None:
    """Run `function` before each message is sent (the embedded default starts its
    in-process worker threads there, on first use)."""
    _before_send.append(function)


def at_server_start(function: Callable[[], None]) -> None:
    """Run `function` when a web server starts (imagehub.wsgi). The apps register what
    the embedded default needs there (the in-process worker, the warm-up)."""
    _server_start.append(function)


def server_started() -> None:
    for function in _server_start:
        function()
