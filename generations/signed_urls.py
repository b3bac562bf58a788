"""Links to stored images that expire.

Local storage: the web process serves ``/v1/files/<name>?expires=…&signature=…`` and
checks an HMAC of the name and expiry. S3: the storage presigns the URL itself.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.http import urlencode

_SALT = "imagehub.files"


def _signature(name: str, expires: int) -> str:
    return salted_hmac(_SALT, f"{name}\n{expires}", algorithm="sha256").hexdigest()


def signed_url(file, base_url: str | None = None) -> str:
    """An expiring link to a stored file: absolute with PUBLIC_BASE_URL or `base_url`
    (scheme and host, e.g. the request's), else a path."""
    storage = file.storage
    if not isinstance(storage, FileSystemStorage):
        return storage.url(file.name)  # S3: presigned, expiring after SIGNED_URL_TTL_SECONDS
    expires = int(time.time()) + settings.SIGNED_URL_TTL_SECONDS
    path = f"/v1/files/{file.name}?" + urlencode(
        {"expires": expires, "signature": _signature(file.name, expires)}
    )
    base = settings.PUBLIC_BASE_URL or base_url
    return base.rstrip("/") + path if base else path


def verify(name: str, expires: str, signature: str) -> bool:
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return False
    if expires_at < time.time():
        return False
    return constant_time_compare(_signature(name, expires_at), signature or "")
