"""`Idempotency-Key`: a client that retries a request which creates or charges (after a
timeout, a dropped connection, a server restart) gets what the first request made, and
is never charged twice. Stripe's rules: the key is the client's, scoped to its
organization, kept for 24 hours; the same key with a different request is an error
(422, naming the header) rather than a silent replay of something else.

The check and the record happen in the transaction that creates the thing, under the
organization's row lock (accounts.ledger.lock_organization), so two concurrent retries
with one key create one thing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from accounts.models import IdempotencyKey, Organization
from imagehub.errors import APIError, InvalidRequest

HEADER = "Idempotency-Key"
MAX_LENGTH = 255


class IdempotencyKeyReused(APIError):
    status = 422
    type = "invalid_request_error"
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class Idempotency:
    key: str
    fingerprint: str


def from_request(request) -> Idempotency | None:
    """The request's Idempotency-Key (None without one), checked, with the fingerprint
    of the request it names."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise InvalidRequest(
            f"'{HEADER}' must be 1 to {MAX_LENGTH} printable ASCII characters "
            "(a UUID is a good choice).",
            param=HEADER,
            code="invalid_idempotency_key",
        )
    return Idempotency(key=key, fingerprint=fingerprint(request))


def fingerprint(request) -> str:
    """SHA-256 of the method, the path and the body as parsed (key order, JSON spacing
    and multipart boundaries do not matter; uploaded files count by their bytes)."""
    data = request.data
    if hasattr(data, "lists"):  # form and multipart bodies
        body = {name: [_value(v) for v in values] for name, values in data.lists()}
    else:
        body = data
    canonical = json.dumps(
        [request.method, request.path, body], sort_keys=True, default=str, ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _value(value):
    if isinstance(value, UploadedFile):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        return f"file:{digest.hexdigest()}"
    return value


def idempotency_lookup(*, organization: Organization, idempotency: Idempotency) -> str | None:
    """What this key made before (its reference), or None. Call under the organization
    lock. Raises 422 when the key was used for a different request."""
    record = IdempotencyKey.objects.filter(organization=organization, key=idempotency.key).first()
    if record is None:
        return None
    if record.created_at < timezone.now() - retention():
        record.delete()  # expired: the key is free again
        return None
    if record.fingerprint != idempotency.fingerprint:
        raise IdempotencyKeyReused(
            f"This {HEADER} was used for a different request in the last 24 hours. Send "
            "a new key for a new request, or repeat the first request exactly.",
            param=HEADER,
        )
    return record.reference


def idempotency_record(
    *, organization: Organization, idempotency: Idempotency, reference: str
) -> None:
    """Remember what the key made (in the transaction that made it)."""
    IdempotencyKey.objects.create(
        organization=organization,
        key=idempotency.key,
        fingerprint=idempotency.fingerprint,
        reference=reference,
    )


def retention() -> timedelta:
    return timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)


def idempotency_purge_batch(now: datetime, batch_size: int) -> int:
    """Forget up to `batch_size` keys past the retention (the workers' purge)."""
    ids = list(
        IdempotencyKey.objects.filter(created_at__lt=now - retention())
        .order_by("created_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    return IdempotencyKey.objects.filter(pk__in=ids).delete()[0] if ids else 0


def idempotency_purge() -> int:
    """Forget every key past the retention."""
    now, total = timezone.now(), 0
    while (deleted := idempotency_purge_batch(now, 1000)) > 0:
        total += deleted
    return total
