"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A secret is ``whsec_`` + base64 of 24 random bytes; the HMAC key is the decoded bytes.
A delivery is signed as base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")) and sent in
``webhook-signature: v1,<signature>``; while a rotated secret is in its grace period
every valid secret signs, space-separated, so a receiver holding either one verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
# A receiver should refuse timestamps further than this from its clock (replays).
TOLERANCE_SECONDS = 5 * 60


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (the prefix is optional, padding too)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("A webhook secret is whsec_ followed by base64.") from exc
    if not key:
        raise ValueError("A webhook secret may not be empty.")
    return key


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """One signature, ``v1,<base64>``."""
    if isinstance(body, str):
        body = body.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets_: list[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per valid secret."""
    return " ".join(sign(s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets_)


def verify(secret: str, *, msg_id: str, timestamp: int, body: bytes | str, header: str) -> bool:
    """Whether one of the signatures in ``header`` was made with ``secret`` (the
    receiver's side; the timestamp tolerance is the caller's business)."""
    expected = sign(secret, msg_id=msg_id, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in header.split())


def redacted(secret: str) -> str:
    """The prefix and the last four characters: 4 of the 32 secret ones."""
    return f"{SECRET_PREFIX}…{secret[-4:]}"
