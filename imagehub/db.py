"""Surviving a dropped database connection (a failover, a PgBouncer restart,
pg_terminate_backend).

The pool checks each connection before handing it out (settings: "check" in the pool
options), so a request starts on a live one. What was in flight when the connection
dropped fails once: `retry_once` repeats an idempotent operation on a new connection,
and the error handler answers the rest with a 503 (imagehub/errors.py), never a 500.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTION_ERRORS = (OperationalError, InterfaceError)


def is_connection_error(exc: BaseException) -> bool:
    """A lost or refused connection (not a constraint or a syntax error)."""
    return isinstance(exc, CONNECTION_ERRORS)


def reconnect() -> None:
    """Drop this thread's connection; the next query opens (or borrows) a fresh one."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may itself fail
        logger.debug("closing a broken connection failed", exc_info=True)
    close_old_connections()


def retry_once(function: Callable[..., T]) -> Callable[..., T]:
    """Run `function` again, once, on a new connection if its connection dropped. Only
    for operations that are safe to repeat (conditional updates, idempotent writes), and
    never inside an outer transaction (its work would be half gone)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except CONNECTION_ERRORS as exc:
            if connection.in_atomic_block:
                raise
            logger.warning(
                "database connection lost in %s (%s); retrying once on a new connection",
                function.__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
            reconnect()
            return function(*args, **kwargs)

    return wrapper
