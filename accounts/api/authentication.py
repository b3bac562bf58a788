"""Who may call the APIs: bearer-key authentication (``Authorization: Bearer ihk_...``),
its OpenAPI description, and the permissions of the image, management and tenant APIs.

The OpenAPI extension sits beside the authenticator so that drf-spectacular knows it
whenever the authenticator is imported (the REST settings and every API view import it).
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from accounts import keys
from accounts.models import APIKey
from accounts.services import api_key_touch
from accounts.suspension import suspended_error
from imagehub.db import retry_once
from imagehub.errors import AuthenticationFailed, PermissionError_

_BAD_KEY = "Incorrect API key provided. You can find your API keys in your imagehub organization."
# Query parameters that would carry a key: refused whatever their value, since a URL is
# written to access logs, proxies and browser histories.
KEY_QUERY_PARAMETERS = frozenset(
    {"api_key", "api-key", "apikey", "key", "access_token", "token", "auth", "authorization"}
)


def _redact(secret: str) -> str:
    return f"{secret[:8]}…{secret[-4:]}" if len(secret) > 16 else "…"


def _key_in_url(params) -> str | None:
    """The name of a query parameter that carries a key: any whose value looks like one,
    and the usual names for one unless the value is a plain id (the generation list's
    `?api_key=<key id>` filter)."""
    for name, values in params.lists():
        for value in values:
            if value.startswith(keys.SECRET_PREFIX):
                return name
            if name.lower() in KEY_QUERY_PARAMETERS and not value.isdigit():
                return name
    return None


class BearerKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        in_url = _key_in_url(request.query_params)
        if in_url:
            raise AuthenticationFailed(
                f"API keys are not accepted in the URL (?{in_url}=): send the key "
                "in the Authorization header, 'Authorization: Bearer <key>', and treat the "
                "one you sent as exposed.",
                code="api_key_in_url",
            )
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
        key, previous = self._find(secret)
        if key is None:
            raise AuthenticationFailed(f"{_BAD_KEY} (key {_redact(secret)})")
        now = timezone.now()
        if key.revoked_at is not None:
            raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
        if previous and (key.previous_expires_at is None or key.previous_expires_at <= now):
            ended = key.previous_expires_at
            raise AuthenticationFailed(
                f"This API key was rotated: the secret {_redact(secret)} is no longer valid"
                + (f" (its grace period ended at {ended:%Y-%m-%d %H:%M:%S} UTC)" if ended else "")
                + ". Use the key's new secret.",
                code="rotated_api_key",
            )
        if key.expires_at is not None and key.expires_at <= now:
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        if key.suspended_at is not None:
            raise suspended_error(key)
        # REMOTE_ADDR is the client as the server sees it: the peer, or the address a
        # trusted proxy forwarded (gunicorn's --forwarded-allow-ips).
        address = request.META.get("REMOTE_ADDR", "")
        if not key.allows_address(address):
            raise PermissionError_(
                f"This API key may not be used from {address or 'an unknown address'}: it is "
                "limited to its allowed IP addresses (allowed_ips).",
                code="ip_not_allowed",
            )
        api_key_touch(key=key)
        return (key.created_by or AnonymousUser(), key)

    @staticmethod
    @retry_once  # a read: the first query of a request, on a connection a blip may have cut
    def _find(secret: str) -> tuple[APIKey | None, bool]:
        """The key a secret belongs to, and whether it is the key's previous (rotated-out)
        secret. Digests are compared in constant time."""
        prefix = keys.lookup_prefix(secret)
        if not prefix:
            return None, False
        candidates = APIKey.objects.select_related("organization", "created_by").filter(
            Q(prefix=prefix) | Q(previous_prefix=prefix)
        )
        for key in candidates[:2]:
            if key.prefix == prefix and keys.matches(secret, key.digest):
                return key, False
            if key.previous_prefix == prefix and keys.matches(secret, key.previous_digest):
                return key, True
        return None, False

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class BearerKeyScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of BearerKeyAuthentication."""

    target_class = BearerKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An imagehub API key: `Authorization: Bearer ihk_...`. The image "
            "API needs a 'generate' key, the management API a 'manage' key.",
        }


class HasAPIKey(BasePermission):
    """The request carries a valid API key (set by BearerKeyAuthentication)."""

    def has_permission(self, request, view):
        return isinstance(request.auth, APIKey)


class HasGenerateScope(BasePermission):
    """The request carries a valid key with the ``generate`` scope (the image API)."""

    def has_permission(self, request, view):
        key = request.auth
        if not isinstance(key, APIKey):
            return False
        if key.scope != APIKey.Scope.GENERATE:
            raise PermissionError_(
                f"this key has the '{key.scope}' scope; the image API needs a 'generate' key",
                code="insufficient_scope",
            )
        return True


class HasManageAccess(BasePermission):
    """The management API: a signed-in person (session) or a ``manage``-scoped key."""

    def has_permission(self, request, view):
        key = request.auth
        if isinstance(key, APIKey):
            if key.scope != APIKey.Scope.MANAGE:
                raise PermissionError_(
                    f"this key has the '{key.scope}' scope; the management API needs a "
                    "'manage' key",
                    code="insufficient_scope",
                )
            return True
        user = request.user
        return bool(user is not None and user.is_authenticated)


class HasKeyOrSession(BasePermission):
    """Any key of the organization (either scope) or a signed-in person (/v1/credits,
    /v1/usage)."""

    def has_permission(self, request, view):
        if isinstance(request.auth, APIKey):
            return True
        return bool(request.user is not None and request.user.is_authenticated)
