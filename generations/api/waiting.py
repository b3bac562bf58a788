"""Waiting for a generation in a web request: sleep until the worker's completion notice
(generations/notify.py), re-reading the row on each notice and every few seconds, so a
notice lost to a reconnect delays a response instead of hanging it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connection
from django.http import HttpResponse
from rest_framework.response import Response

from generations import notify
from generations.models import Generation
from imagehub import errors
from imagehub.asgi_app import CAN_DEFER, DEFERRED
from imagehub.renderers import JSONRenderer

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


# --- Waiting without a thread (under ASGI: imagehub.asgi runs `Deferred.complete`) ------
# The synchronous parts of a deferred wait (re-reading the row, rendering the answer) run
# in this small pool; they take milliseconds, so a few threads serve thousands of waits.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="imagehub-wait")


def deferrable(request) -> bool:
    """Whether the server can run this request's wait on its event loop."""
    scope = getattr(request, "scope", None)
    return bool(scope and scope.get(CAN_DEFER))


class _LoopEvent:
    """What the notice hub sets (like a threading.Event), waking an asyncio.Event."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.event = asyncio.Event()

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self.event.set)


def _in_thread(function: Callable[[], T]) -> Callable[[], T]:
    def run() -> T:
        try:
            return function()
        finally:
            # Pool threads serve many requests: give the connection back each time.
            if not connection.in_atomic_block:
                connection.close()

    return run


class Deferred:
    """A sync wait that happens on the event loop: subscribe, re-read the row, sleep until
    a notice (or the recheck interval), until it finishes or `timeout` runs out; then
    `finish(generation)` renders the answer in a pool thread."""

    def __init__(
        self,
        generation: Generation,
        timeout: float,
        finish: Callable[[Generation], HttpResponse],
        observe: Callable[[int], None] | None = None,
    ):
        self.generation = generation
        self.timeout = timeout
        self.finish = finish
        self.observe = observe or (lambda status: None)

    async def _run(self, function: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_executor, _in_thread(function))

    async def complete(self, receive) -> HttpResponse:
        loop = asyncio.get_running_loop()
        wake = _LoopEvent(loop)
        generation = self.generation
        notify.hub.add(generation.id, wake)  # before the first read: no notice is missed
        disconnected = asyncio.ensure_future(_disconnect(receive))
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                wake.event.clear()
                await self._run(generation.refresh_from_db)
                remaining = deadline - time.monotonic()
                if generation.is_finished or remaining <= 0 or disconnected.done():
                    break
                sleeper = asyncio.ensure_future(wake.event.wait())
                await asyncio.wait(
                    {sleeper, disconnected},
                    timeout=min(remaining, RECHECK_SECONDS),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                sleeper.cancel()
        finally:
            notify.hub.discard(generation.id, wake)
            disconnected.cancel()
        return await self._run(lambda: self.finish(generation))


async def _disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def defer(request, generation: Generation, timeout: float, finish) -> Response:
    """Hand the wait to the server's loop (imagehub.asgi_app); `finish(generation)` gives
    the answer (a DRF Response, or raises an APIError) once it is over. Returns the
    placeholder the server replaces."""
    request.scope[DEFERRED] = Deferred(generation, timeout, lambda latest: _render(finish, latest))
    return Response(status=202)


def _render(finish, generation: Generation) -> HttpResponse:
    try:
        response = finish(generation)
    except Exception as exc:  # noqa: BLE001 - every error leaves in the envelope
        err = errors.as_api_error(exc)
        if err is None:
            logger.exception("unhandled error finishing generation %s", generation.id)
            err = errors.APIError("The server had an error while processing your request.")
        return errors.render(err)
    rendered = HttpResponse(
        JSONRenderer().render(response.data),
        status=response.status_code,
        content_type="application/json",
    )
    for name, value in response.items():
        if name.lower() != "content-type":
            rendered[name] = value
    return rendered
