"""Waiting for a generation in a web request: sleep until the worker's completion notice
(generations/notify.py), re-reading the row on each notice and every few seconds, so a
notice lost to a reconnect delays a response instead of hanging it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from django.db import connection

from generations.models import Generation

# The longest sleep between two reads of the row.
RECHECK_SECONDS = 5.0


def updates(generation: Generation, wake: threading.Event, timeout: float) -> Iterator[Generation]:
    """The generation, re-read now and after every wake-up, until it has finished or
    `timeout` seconds have passed (the last one yielded tells which)."""
    deadline = time.monotonic() + timeout
    while True:
        generation.refresh_from_db()
        yield generation
        remaining = deadline - time.monotonic()
        if generation.is_finished or remaining <= 0:
            return
        # Hand the database connection back while asleep: hundreds of waiting requests
        # must not hold hundreds of connections.
        if not connection.in_atomic_block:
            connection.close()
        wake.wait(min(remaining, RECHECK_SECONDS))
        wake.clear()


def wait(generation: Generation, wake: threading.Event, timeout: float) -> Generation:
    for latest in updates(generation, wake, timeout):  # noqa: B007 - the last one counts
        pass
    return latest


def still_running_message(generation: Generation, waited: float) -> str:
    return (
        f"Generation {generation.id} did not finish within {waited:.0f} s. It is still "
        f"{generation.status}; poll GET /v1/images/generations/{generation.id}."
    )
