"""Webhook signing secrets encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The keys come from IMAGEHUB_SECRET_ENCRYPTION_KEY (settings.SECRET_ENCRYPTION_KEYS): a
comma-separated list of Fernet keys, the first encrypts and every one decrypts, so a key
is rotated by putting a new one first, running `manage.py encrypt_webhook_secrets` (which
re-encrypts every row under it) and then dropping the old one. Unset, a key is derived
from SECRET_KEY (the embedded default works with no configuration); the derived key
always decrypts too, so setting a key later needs nothing more than that command.

A secret is decrypted only to sign a delivery and, once, to show a new one.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


def derived_key(secret_key: str) -> bytes:
    digest = hashlib.sha256(b"imagehub webhook secrets\0" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    given = [Fernet(key.encode()) for key in keys]
    return MultiFernet([*given, Fernet(derived_key(secret_key))])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.SECRET_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of a stored secret ("" for none). Raises ValueError when no
    configured key opens it (the key it was made with was removed)."""
    if not token:
        return ""
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError(
            "A webhook signing secret cannot be decrypted with IMAGEHUB_SECRET_ENCRYPTION_KEY: "
            "put the key it was encrypted with back in the list."
        ) from None


def reencrypt(token: str) -> str:
    """The same secret under the first key (MultiFernet.rotate)."""
    return _current().rotate(token.encode()).decode("ascii") if token else token
