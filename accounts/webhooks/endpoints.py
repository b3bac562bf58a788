"""An organization's webhook endpoint (default URL and events) and its signing secrets,
and where a generation's events go. The deliveries themselves (outbox, senders, retries)
are accounts/webhooks/delivery.py's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.webhooks import http, secrets, signing
from accounts.webhooks.events import EVENTS
from accounts.webhooks.models import WebhookEndpoint
from imagehub.errors import InvalidRequest

MAX_ROTATION_GRACE_SECONDS = 30 * 24 * 3600

_UNSET: Any = object()


# --- the endpoint and its secrets ----------------------------------------------------------


def webhook_url_check(url: str, *, param: str = "url") -> str:
    """A URL webhooks may call, judged as each attempt judges it (its form, and the
    addresses its host resolves to; accounts/webhooks/http.py). Raises InvalidRequest
    naming `param`."""
    url = url.strip()
    if len(url) > 2000:
        raise InvalidRequest("A webhook URL is at most 2000 characters.", param=param)
    try:
        http.destination_check(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)
    except http.DestinationRefused as exc:
        message = str(exc)
        if message == http.NOT_ALLOWED:
            message = (
                "Webhooks may not call loopback, private, link-local, metadata or reserved "
                "addresses, nor names that resolve to one: address not allowed."
            )
        raise InvalidRequest(message, param=param) from exc
    return url


def webhook_events_check(events: list[str], *, param: str = "events") -> list[str]:
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidRequest(
            f"Unknown webhook event '{unknown[0]}'; the events are {', '.join(EVENTS)}.",
            param=param,
        )
    return [e for e in EVENTS if e in events]  # canonical order, no repeats


def webhook_endpoint_get(*, organization_id: int) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(organization_id=organization_id).first()


@transaction.atomic
def webhook_endpoint_set(
    *, organization: Organization, url: str | None = _UNSET, events: list[str] | None = _UNSET
) -> tuple[WebhookEndpoint, str | None]:
    """Set the default URL (blank = none) and events (empty = all); arguments left out
    stay. The first call creates the signing secret and returns it, once; later calls
    return None in its place."""
    endpoint = WebhookEndpoint.objects.select_for_update().filter(organization=organization).first()
    created = endpoint is None
    if created:
        endpoint = WebhookEndpoint(organization=organization, secret=signing.new_secret())
    if url is not _UNSET:
        endpoint.url = webhook_url_check(url) if url else ""
    if events is not _UNSET:
        endpoint.events = webhook_events_check(list(events or []))
    endpoint.updated_at = timezone.now()
    endpoint.save()
    return endpoint, endpoint.secret if created else None


@transaction.atomic
def webhook_secret_rotate(
    *, organization: Organization, grace_seconds: int = 86400
) -> tuple[WebhookEndpoint, str]:
    """A new signing secret. Deliveries are signed with both until `grace_seconds` have
    passed (0 = the old one stops at once); a secret from an earlier rotation that was
    still in its grace period stops now."""
    if not 0 <= grace_seconds <= MAX_ROTATION_GRACE_SECONDS:
        raise InvalidRequest(
            f"grace_seconds must be between 0 and {MAX_ROTATION_GRACE_SECONDS} (30 days).",
            param="grace_seconds",
        )
    endpoint = WebhookEndpoint.objects.select_for_update().filter(organization=organization).first()
    if endpoint is None:
        endpoint, secret = webhook_endpoint_set(organization=organization)
        return endpoint, secret
    now = timezone.now()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_expires_at = now + timedelta(seconds=grace_seconds)
    endpoint.secret = signing.new_secret()
    endpoint.secret_created_at = now
    endpoint.updated_at = now
    endpoint.save()
    return endpoint, endpoint.secret


def webhook_secrets_reencrypt() -> int:
    """Every endpoint's secrets under the first encryption key (key rotation)."""
    count = 0
    for pk in WebhookEndpoint.objects.values_list("pk", flat=True).iterator():
        with transaction.atomic():
            endpoint = WebhookEndpoint.objects.select_for_update().get(pk=pk)
            WebhookEndpoint.objects.filter(pk=pk).update(
                secret_encrypted=secrets.reencrypt(endpoint.secret_encrypted),
                previous_secret_encrypted=secrets.reencrypt(endpoint.previous_secret_encrypted),
            )
        count += 1
    return count


def webhook_target(
    *, organization_id: int, url: str | None, events: list[str] | None
) -> tuple[str, list[str]] | None:
    """Where a generation's events go and which: its own `webhook` if it named one, else
    the organization's default URL; its own `webhook_events` if given, else the
    endpoint's (empty = all). None: no webhook."""
    if not url:
        endpoint = webhook_endpoint_get(organization_id=organization_id)
        if endpoint is None or not endpoint.url:
            return None
        url, events = endpoint.url, events or endpoint.events
    return url, list(events or EVENTS)
