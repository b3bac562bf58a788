"""Bearer-key authentication for the API (``Authorization: Bearer ihk_...``)."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from accounts import keys
from accounts.models import APIKey
from accounts.services import api_key_touch
from imagehub.errors import AuthenticationFailed

_BAD_KEY = "Incorrect API key provided. You can find your API keys in your imagehub organization."


def _redact(secret: str) -> str:
    return f"{secret[:8]}…{secret[-4:]}" if len(secret) > 16 else "…"


class BearerKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <key>'.", code="invalid_api_key"
            )
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed(_BAD_KEY) from None
        prefix = keys.lookup_prefix(secret)
        key = (
            APIKey.objects.select_related("organization", "created_by")
            .filter(prefix=prefix)
            .first()
            if prefix
            else None
        )
        if key is None or not keys.matches(secret, key.digest):
            raise AuthenticationFailed(f"{_BAD_KEY} (key {_redact(secret)})")
        if key.revoked_at is not None:
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if key.expires_at is not None and key.expires_at <= timezone.now():
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        api_key_touch(key=key)
        return (key.created_by or AnonymousUser(), key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class HasAPIKey(BasePermission):
    """The request carries a valid API key (set by BearerKeyAuthentication)."""

    def has_permission(self, request, view):
        return isinstance(request.auth, APIKey)
