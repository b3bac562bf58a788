"""Key suspension: a key the content policy blocked too often is refused (403
`key_suspended`) until the operator lifts the suspension in the admin. Who decides that a
key is suspended is the moderation package's business (generations/moderation/); this
module only holds the state change, the answer a suspended key gets and the owners' email.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.models import APIKey, Membership
from imagehub.errors import PermissionError_

logger = logging.getLogger(__name__)


def suspended_error(key: APIKey) -> PermissionError_:
    """The 403 a suspended key gets: when, why, and who can lift it."""
    when = f"{key.suspended_at:%Y-%m-%d %H:%M} UTC" if key.suspended_at else "recently"
    reason = key.suspended_reason or "too many requests blocked by the content policy"
    return PermissionError_(
        f"This API key was suspended on {when}: {reason}. Only the operator of this "
        f"server can lift the suspension; the owners of '{key.organization.name}' were "
        "emailed and can ask them, or use another key in the meantime.",
        code="key_suspended",
    )


def api_key_suspend(*, key_id: int, reason: str) -> bool:
    """Suspend a key, once: only the call that suspends it emails the organization's
    owners. Returns whether this call suspended it."""
    with transaction.atomic():
        done = APIKey.objects.filter(
            pk=key_id, suspended_at__isnull=True, revoked_at__isnull=True
        ).update(suspended_at=timezone.now(), suspended_reason=reason[:300])
        if done:
            key = APIKey.objects.select_related("organization").get(pk=key_id)
            transaction.on_commit(lambda: _email_owners(key, reason))
    if done:
        logger.warning("suspended key %s: %s", key_id, reason)
    return bool(done)


def api_key_lift_suspension(*, key: APIKey) -> bool:
    """The operator lifts a suspension (the admin's action). Idempotent."""
    done = APIKey.objects.filter(pk=key.pk, suspended_at__isnull=False).update(
        suspended_at=None, suspended_reason=""
    )
    key.refresh_from_db()
    if done:
        logger.info("lifted the suspension of key %s", key.pk)
    return bool(done)


def _email_owners(key: APIKey, reason: str) -> None:
    owners = list(
        Membership.objects.filter(
            organization_id=key.organization_id, role=Membership.Role.OWNER
        ).values_list("user__email", flat=True)
    )
    if not owners:
        return
    send_mail(
        subject=f"[imagehub] {key.organization.name}: API key {key.redacted} suspended",
        message=(
            f"The API key '{key.name or key.redacted}' ({key.redacted}) of "
            f"{key.organization.name} was suspended: {reason}.\n\n"
            "Requests with it are refused (403 key_suspended) until the operator of this "
            "server lifts the suspension. If the key was leaked or misused, revoke it on "
            "the Keys page and create a new one."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=owners,
        fail_silently=True,
    )
