"""Outbound HTTP for webhooks, safe against server-side request forgery.

- http and https only, no credentials in the URL;
- the host is resolved once, every address it resolves to is checked (private,
  loopback, link-local, multicast, reserved, unspecified and IPv4-mapped forms of them are
  refused unless the operator allows private destinations), and the connection goes to
  the address that was checked, so a second DNS answer cannot swap it (DNS rebinding);
  TLS still verifies the certificate against the host name;
- a timeout on connect and on each read, a cap on the bytes of the answer read;
- redirects are never followed (a 3xx is a failed attempt).

The same judgement (`destination_check`) runs when a URL is saved and at every attempt:
literal addresses in every spelling the resolver accepts (``127.1``, ``0x7f000001``,
``2130706433``, ``0177.0.0.1``) and names that resolve to a forbidden address
(``localhost``) are refused at save; at send a name is resolved again (its answer may
have changed) and the connection pinned to the checked address. What is refused says
"address not allowed" and nothing of the resolved addresses.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

USER_AGENT = "imagehub-webhooks/1"


class DestinationRefused(Exception):
    """The URL may not be called (scheme, credentials, or a forbidden address)."""


NOT_ALLOWED = "address not allowed"


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer (refused, timed out, connection failed)
    error: str = ""
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def address_refused(address: str) -> str | None:
    """Why a destination address is refused, or None if it is a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return address_refused(str(mapped))
        if ip.teredo is not None:
            return address_refused(str(ip.teredo[1]))
    for name in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
        if getattr(ip, f"is_{name}"):
            return f"{address} is a {name.replace('_', '-')} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of a URL webhooks may call, judged by its
    form only (DNS is checked when sending). Raises DestinationRefused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused("A webhook URL must start with http:// or https://.")
    if parts.username or parts.password:
        raise DestinationRefused("A webhook URL may not carry a user name or password.")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise DestinationRefused(f"Bad port in the webhook URL: {exc}.") from exc
    if not host:
        raise DestinationRefused("A webhook URL needs a host.")
    port = port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


def check_literal(host: str) -> None:
    """Refuse a host that is itself a forbidden IP address in its canonical spelling."""
    try:
        reason = address_refused(host.strip("[]"))
    except ValueError:
        return  # a name, or another spelling: judged when it is resolved
    if reason:
        raise DestinationRefused(NOT_ALLOWED)


def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Every address of `host`; refused if any of them is forbidden. getaddrinfo reads
    numeric hosts the way a connection would (inet_aton's short, octal, hex and integer
    forms), so every spelling of an address is judged as that address."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectionError("cannot resolve the host name") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private and any(address_refused(address) for address in addresses):
        raise DestinationRefused(NOT_ALLOWED)
    return addresses


def destination_check(url: str, *, allow_private: bool) -> None:
    """What a webhook URL is judged by, at save: its form, and unless private
    destinations are allowed, its host's addresses. A name that does not resolve now is
    let through (DNS may come later) and judged again at each attempt."""
    _, host, port, _ = check_url(url)
    if allow_private:
        return
    check_literal(host)
    try:
        resolve(host, port, allow_private=False)
    except ConnectionError:
        pass


class _PinnedHTTP(http.client.HTTPConnection):
    """Speaks to `host` (Host header) at an address chosen beforehand."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    default_port = 443
    _context = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    max_response_bytes: int,
    allow_private: bool = False,
) -> Answer:
    """POST `body` to `url` once. Never raises for a network failure: the answer says
    what happened. Raises DestinationRefused for a URL that may not be called."""
    scheme, host, port, path = check_url(url)
    try:
        addresses = resolve(host, port, allow_private=allow_private)
    except ConnectionError as exc:
        return Answer(None, str(exc))
    connection_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    deadline = time.monotonic() + timeout
    error = ""
    for address in addresses:
        connection = connection_class(host, port, address, timeout)
        try:
            connection.connect()
        except OSError as exc:  # the next address, if any (not named in the log)
            error = f"cannot connect: {exc.strerror or type(exc).__name__}"
            connection.close()
            continue
        try:
            connection.request(
                "POST",
                path,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    **headers,
                },
            )
            response = connection.getresponse()
            received = b""
            while len(received) < max_response_bytes and time.monotonic() < deadline:
                chunk = response.read1(min(65536, max_response_bytes - len(received)))
                if not chunk:
                    break
                received += chunk
            answer = Answer(response.status, body=received)
            if 300 <= response.status < 400:
                answer.error = f"redirect to {response.getheader('Location', '?')} not followed"
            return answer
        except (OSError, http.client.HTTPException) as exc:
            # Sent, perhaps: never to a second address (that would deliver twice).
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Answer(None, reason[:500])
        finally:
            connection.close()
    return Answer(None, error[:500])
