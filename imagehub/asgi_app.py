"""What imagehub.asgi wraps around Django's ASGI application.

Django handles each request as usual, in a thread of its own while it runs. Two things
happen around it, on the event loop, where they cost no thread:

- **Body limits.** A body is read with an idle timeout between reads (408) and counted as
  it arrives, so a chunked body (no Content-Length) is held to the same limits (413).
- **Deferred waits.** A view that would otherwise sleep in its thread until a job
  finishes (the sync POST of the image API) puts a :class:`Deferred` in
  ``scope["imagehub.deferred"]`` and returns a placeholder. Django then finishes the
  request and gives its thread back; the wait happens here, on the loop, and the final
  response replaces the placeholder (keeping its headers: request id, rate limits, ...).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from django.conf import settings

from imagehub import errors

DEFERRED = "imagehub.deferred"
# The most header bytes a request may carry (431 above; imagehub.server says the same).
MAX_HEADER_BYTES = 32 * 1024
# Views ask for a deferred wait only when the server can run one (not under WSGI).
CAN_DEFER = "imagehub.can_defer"


class Deferred(Protocol):
    async def complete(self, receive) -> Any:
        """Wait, then return the final Django response."""


class _Disconnected(Exception):
    pass


class _BodyError(Exception):
    def __init__(self, err: errors.APIError):
        self.err = err


def body_limit(content_type: str, path: str) -> int:
    """The most bytes a request body may carry: uploads (multipart, and image edits,
    which may also arrive as JSON with the images as data URLs) get MAX_UPLOAD_BYTES,
    everything else DATA_UPLOAD_MAX_MEMORY_SIZE. Here, while the body arrives (chunked
    ones too), and in RequestIdMiddleware from Content-Length (under WSGI as well)."""
    if content_type.startswith("multipart/") and path.rstrip("/").endswith("/adapters"):
        # A LoRA upload (the API's and the Adapters page's): the file's own limit is
        # checked by the view (a 400 naming `file`); this leaves room for the form.
        return settings.MAX_ADAPTER_BYTES + 1024 * 1024
    if content_type.startswith("multipart/") or path.endswith("/images/edits"):
        return settings.MAX_UPLOAD_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _limit(scope) -> int:
    content_type = ""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_type = value.decode("latin-1")
    return body_limit(content_type, scope["path"])


def _encode(response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = response.content
    headers = [
        (name.lower().encode("latin-1"), str(value).encode("latin-1"))
        for name, value in response.items()
        if name.lower() != "content-length"
    ]
    headers.append((b"content-length", str(len(body)).encode()))
    return response.status_code, headers, body


async def _send_error(send, err: errors.APIError) -> None:
    status, headers, body = _encode(errors.render(err))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_gates: dict[int, asyncio.Semaphore] = {}


def _gate() -> asyncio.Semaphore:
    """At most WEB_CONCURRENCY requests run Django code at once (each in a thread, most
    with a database connection); the others wait on the loop, costing no thread. The
    gate is held until the response starts, not while a deferred wait or a stream goes
    on."""
    loop_id = id(asyncio.get_running_loop())
    gate = _gates.get(loop_id)
    if gate is None:
        gate = _gates[loop_id] = asyncio.Semaphore(settings.WEB_CONCURRENCY)
    return gate


async def _buffered(scope, receive):
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected  # the client left before its body was complete
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    scope["headers"] = [
        (name, value)
        for name, value in scope["headers"]
        if name.lower() not in (b"transfer-encoding", b"content-length")
    ] + [(b"content-length", str(len(body)).encode())]
    replayed = False

    async def receive_again():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


class _BodyReader:
    """`receive` for Django: the body as it arrives, with an idle timeout between reads
    (408) and a running count against the limit (413), so a chunked body is held to the
    same limits as one with a Content-Length."""

    def __init__(self, scope, receive):
        self.receive = receive
        self.limit = _limit(scope)
        self.idle = settings.BODY_TIMEOUT_SECONDS
        self.received = 0
        self.done = False

    async def __call__(self):
        if self.done:
            return await self.receive()
        try:
            message = await asyncio.wait_for(self.receive(), self.idle)
        except TimeoutError:
            err = errors.APIError(
                f"The request body did not arrive: nothing came for {self.idle:g} s.",
                code="request_timeout",
            )
            err.status, err.type = 408, "invalid_request_error"
            raise _BodyError(err) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
            if self.received > self.limit:
                raise _BodyError(
                    errors.PayloadTooLarge(
                        f"The request body is over {self.limit} bytes, the most this "
                        "server accepts here."
                    )
                )
        return message


class _Responder:
    """`send` for Django: passes the answer on, except the placeholder of a deferred
    wait (whose headers it keeps for the final answer), and lets the next request in at
    the gate as soon as the answer starts (a streamed body goes on without a place)."""

    def __init__(self, scope, send, gate: asyncio.Semaphore):
        self.scope = scope
        self.send = send
        self.gate = gate
        self.started = False  # something went out to the client
        self.released = False  # the place at the gate was given back
        self.placeholder: list[tuple[bytes, bytes]] = []

    async def __call__(self, message):
        if message["type"] == "http.response.start" and not self.released:
            self.released = True
            self.gate.release()
        if self.scope.get(DEFERRED) is not None:
            if message["type"] == "http.response.start":
                self.placeholder.extend(message.get("headers", ()))
            return
        self.started = True
        await self.send(message)


def _headers_too_large(scope) -> errors.APIError | None:
    header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
    if header_bytes <= MAX_HEADER_BYTES:
        return None
    err = errors.APIError(
        f"The request headers are over {MAX_HEADER_BYTES} bytes, the most this server accepts.",
        code="headers_too_large",
    )
    err.status, err.type = 431, "invalid_request_error"
    return err


async def _run_django(app, scope, receive, send) -> _Responder | None:
    """The whole body first, on the loop (a slow upload holds no thread and no place at
    the gate; Django reads a body without Content-Length as empty, it gets one here),
    then Django, within the gate. None when the exchange ended here: the client left, or
    its body broke a limit (answered, unless an answer had begun)."""
    gate = _gate()
    responder = _Responder(scope, send, gate)
    entered = False
    try:
        receive_next = await _buffered(scope, _BodyReader(scope, receive))
        await gate.acquire()
        entered = True
        await app(scope, receive_next, responder)
    except _Disconnected:
        return None
    except _BodyError as exc:
        if not responder.started:
            await _send_error(send, exc.err)
        return None
    finally:
        if entered and not responder.released:
            gate.release()
    return responder


async def _answer_deferred(deferred: Deferred, receive, send, placeholder) -> None:
    """Wait on the loop, then send the final answer with the placeholder's headers."""
    response = await deferred.complete(receive)
    status, headers, body = _encode(response)
    names = {name for name, _ in headers}
    for name, value in placeholder:
        name = name.lower()
        if name not in names and name not in (b"content-type", b"content-length"):
            headers.append((name, value))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    observe = getattr(deferred, "observe", None)
    if observe is not None:
        observe(status)


def wrap(app):
    """Body limits and deferred waits around a Django ASGI application."""

    async def application(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        too_large = _headers_too_large(scope)
        if too_large is not None:
            return await _send_error(send, too_large)
        scope[CAN_DEFER] = True
        responder = await _run_django(app, scope, receive, send)
        deferred: Deferred | None = scope.get(DEFERRED)
        if responder is not None and deferred is not None:
            await _answer_deferred(deferred, receive, send, responder.placeholder)

    return application
