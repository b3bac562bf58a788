"""API key secrets: generation, digests and verification.

A secret looks like ``ihk_3fj9a0c2kq7m_<43 url-safe characters>``: the ``ihk_`` prefix
lets secret scanners recognise leaks, the next 12 characters are a public lookup id,
and the rest carries 256 bits of randomness. Only the lookup prefix, an HMAC-SHA256
digest of the whole secret (keyed by a server secret) and the last four characters
are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from django.conf import settings

SECRET_PREFIX = "ihk_"
LOOKUP_LENGTH = 12
_LOOKUP_ALPHABET = string.ascii_lowercase + string.digits


def new_secret() -> tuple[str, str]:
    """Return (secret, lookup prefix) for a brand-new key."""
    lookup = "".join(secrets.choice(_LOOKUP_ALPHABET) for _ in range(LOOKUP_LENGTH))
    prefix = f"{SECRET_PREFIX}{lookup}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def digest(secret: str) -> str:
    key = settings.API_KEY_HMAC_SECRET.encode()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)


def lookup_prefix(secret: str) -> str | None:
    """The stored lookup prefix of a presented secret, or None if it cannot be one of ours."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    prefix = secret[: len(SECRET_PREFIX) + LOOKUP_LENGTH]
    if len(secret) <= len(prefix) + 1 or secret[len(prefix)] != "_":
        return None
    return prefix
