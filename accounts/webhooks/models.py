"""The webhook tables: an organization's endpoint settings and the delivery outbox.

The organization is named by string ("accounts.Organization") so that this module does
not import accounts/models.py, which imports it (Django registers the models from there).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.webhooks import secrets
from accounts.webhooks.signing import redacted


class WebhookEndpoint(models.Model):
    """An organization's webhook settings: the default URL its generations report to
    (blank: only requests that name a `webhook` get deliveries), the events it wants, and
    the signing secrets. The secrets are stored encrypted (accounts/webhooks/secrets.py):
    `secret` and `previous_secret` decrypt on use (signing, the one reveal) and encrypt on
    assignment; `secret_hint` is the redacted form pages show. After a rotation the
    previous secret also signs until `previous_expires_at`."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, related_name="webhook_endpoint"
    )
    url = models.URLField(max_length=2000, blank=True)
    # Event names (accounts/webhooks/events.py); empty = all.
    events = models.JSONField(default=list, blank=True)
    secret_encrypted = models.TextField()
    secret_hint = models.CharField(max_length=32, blank=True)
    secret_created_at = models.DateTimeField(default=timezone.now)
    previous_secret_encrypted = models.TextField(blank=True)
    previous_expires_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"webhook of {self.organization_id}: {self.url or '(no default URL)'}"

    @property
    def secret(self) -> str:
        return secrets.decrypt(self.secret_encrypted)

    @secret.setter
    def secret(self, value: str) -> None:
        self.secret_encrypted = secrets.encrypt(value)
        self.secret_hint = redacted(value)

    @property
    def previous_secret(self) -> str:
        return secrets.decrypt(self.previous_secret_encrypted)

    @previous_secret.setter
    def previous_secret(self, value: str) -> None:
        self.previous_secret_encrypted = secrets.encrypt(value) if value else ""

    def signing_secrets(self, now=None) -> list[str]:
        """Every secret valid at `now`: the current one, and the previous one during the
        grace period of a rotation."""
        now = now or timezone.now()
        found = [self.secret]
        if (
            self.previous_secret_encrypted
            and self.previous_expires_at
            and self.previous_expires_at > now
        ):
            found.append(self.previous_secret)
        return found


class WebhookDelivery(models.Model):
    """One webhook message and its delivery attempts: the outbox row, written in the
    transaction of the state change it reports. `next_attempt_at` is when it is due; a
    sender that takes it pushes that forward by a lease first, so a sender that dies
    mid-attempt leaves it due again after the lease (accounts/webhooks/delivery.py)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    # Not indexed alone: (organization, -id) below serves every lookup by tenant.
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.CASCADE,
        related_name="webhook_deliveries",
        db_index=False,
    )
    # The generation's id (accounts never imports generations: a string, not a key). Not
    # indexed: no query looks deliveries up by generation (issue 24's index audit).
    generation_id = models.CharField(max_length=40)
    event = models.CharField(max_length=32)
    url = models.URLField(max_length=2000)
    # `webhook-id`: the same for every attempt, so receivers can drop duplicates.
    msg_id = models.CharField(max_length=64, unique=True)
    # The exact JSON sent: every attempt sends the same bytes.
    body = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Failed attempts are retried until this time; the last one may land after it.
    retry_until = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The tenant's list, newest first by id (delivery.delivery_list) with its
            # `before` cursor on the id: the list's own order, read from the index.
            models.Index(fields=["organization", "-id"], name="webhook_delivery_list"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_delivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} of {self.generation_id} -> {self.url} ({self.status})"
