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


def signed_url(file, request=None) -> str:
    storage = file.storage
    if not isinstance(storage, FileSystemStorage):
        return storage.url(file.name)  # S3: presigned, expiring after SIGNED_URL_TTL_SECONDS
    expires = int(time.time()) + settings.SIGNED_URL_TTL_SECONDS
    path = f"/v1/files/{file.name}?" + urlencode(
        {"expires": expires, "signature": _signature(file.name, expires)}
    )
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    return request.build_absolute_uri(path) if request is not None else path


def verify(name: str, expires: str, signature: str) -> bool:
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return False
    if expires_at < time.time():
        return False
    return constant_time_compare(_signature(name, expires_at), signature or "")
