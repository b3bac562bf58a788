"""The web server: gunicorn managing uvicorn workers (``--worker-class
imagehub.server.Worker``) that run imagehub.asgi on one asyncio loop each.

Why (README, "Limits and protections"; figures in BENCHMARKS.md): a thread per
connection (gunicorn's gthread) lets a few dozen clients that trickle their headers, or
a few hundred requests waiting for images, take every thread. On the loop an idle or
slow connection costs a socket and a few kilobytes, and a request waiting for its images
costs a coroutine (imagehub.asgi, deferred waits). Django still runs each request's code
in a thread of its own while it runs.

On top of uvicorn's h11 protocol this adds what a server facing the internet needs:

- a deadline for a request's headers (``IMAGEHUB_HEADER_TIMEOUT_SECONDS``): a client
  that trickles them gets ``408`` and is closed; an idle keep-alive connection is closed
  after gunicorn's ``--keep-alive``;
- errors of the HTTP layer in the API's error envelope: headers over the size limit
  are ``431``, a malformed request ``400``.
"""

from __future__ import annotations

import json
import logging
import re

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn_worker import UvicornWorker

# A request's headers larger than this are refused with 431 (h11's incomplete-event limit
# here; imagehub.asgi_app.MAX_HEADER_BYTES, the same, for a header block that arrives whole).
MAX_HEADER_BYTES = 32 * 1024


def _header_timeout() -> float:
    from django.conf import settings

    return settings.HEADER_TIMEOUT_SECONDS


def _envelope(message: str, code: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return json.dumps({"error": error}).encode()


class Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and errors in the envelope."""

    def __init__(self, config, *args, **kwargs):
        config.h11_max_incomplete_event_size = MAX_HEADER_BYTES
        super().__init__(config, *args, **kwargs)
        self._header_deadline = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # A connection that sends nothing at all is held to the same deadline.
        self._arm_header_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:
            # Part of a request's headers: its deadline runs from the first byte.
            if self._header_deadline is None:
                self._arm_header_deadline()
        else:
            self._disarm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(_header_timeout(), self._headers_timed_out)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_timed_out(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is not h11.IDLE or self.conn.our_state is not h11.IDLE:
            return  # the request arrived meanwhile
        if self.conn.trailing_data[0]:
            message = "The request headers did not arrive in time."
            self._send_error(408, message, "request_timeout")
        else:
            self.transport.close()

    def _send_error(self, status: int, message: str, code: str) -> None:
        if self.transport.is_closing():
            return
        body = _envelope(message, code)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        reason = {400: b"Bad Request", 408: b"Request Timeout"}.get(status, b"")
        if status == 431:
            reason = b"Request Header Fields Too Large"
        try:
            conn = h11.Connection(h11.SERVER)  # a fresh one: ours may be in ERROR
            conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.next_event()
            output = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
            output += conn.send(h11.Data(data=body))
            output += conn.send(h11.EndOfMessage())
            self.transport.write(output)
        finally:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # h11 refused the request: its headers are over the limit, or malformed.
        buffered = len(self.conn.trailing_data[0])
        if buffered > MAX_HEADER_BYTES:
            self._send_error(
                431,
                f"The request headers are over {MAX_HEADER_BYTES} bytes, the most this "
                "server accepts.",
                "headers_too_large",
            )
        else:
            self._send_error(400, "The HTTP request is malformed.", "bad_request")


class Worker(UvicornWorker):
    """gunicorn worker: uvicorn on the asyncio loop, with :class:`Protocol`. ASGI
    lifespan is off (Django has none); gunicorn's --graceful-timeout bounds a stop, during
    which requests in flight (waits for images included) finish."""

    CONFIG_KWARGS = {
        "loop": "asyncio",
        "http": "imagehub.server:Protocol",
        "lifespan": "off",
    }


# --- the access log never carries a secret ---------------------------------------------------

_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:api[_-]?key|key|access_token|token|auth|authorization|signature)=)[^&\s]*"
)
_KEY_LOOKALIKE = re.compile(r"(?:ihk|whsec)_[A-Za-z0-9_\-+/=]+")


def redact_target(target: str) -> str:
    """A request target as the access log may show it: values of parameters that carry
    keys or signatures, and anything shaped like an imagehub secret, replaced."""
    return _KEY_LOOKALIKE.sub("[redacted]", _SECRET_QUERY.sub(r"\1[redacted]", target))


class RedactSecrets(logging.Filter):
    """On uvicorn's access logger: its line is '%s - "%s %s HTTP/%s" %d' with the path
    and query third (an API key sent as ?api_key= is refused, and not written down)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


logging.getLogger("uvicorn.access").addFilter(RedactSecrets())
