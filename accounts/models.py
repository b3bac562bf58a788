"""Tenants, people, API keys, invitations, idempotency keys and the audit log (the money and
usage records are in accounts/billing_models.py, the webhook models in
accounts/webhooks/models.py; both imported at the end)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models import Q
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        extra.setdefault("email_verified_at", timezone.now())  # the operator's own
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person. The email address is the login."""

    username = None
    email = models.EmailField("email address", unique=True)
    # Set when the person follows the link of the verification email (or the operator
    # vouches: create_api_key, createsuperuser); until then no keys, no starting credits.
    email_verified_at = models.DateTimeField(null=True, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    """A tenant: owns keys, generations and credits."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    # Cached sum of the ledger, in micro-credits; changes only with F() under a row lock,
    # in the same transaction as the ledger entry that explains it.
    credit_balance = models.BigIntegerField(default=0)
    # Micro-credits set aside for generations in flight (holds not yet captured/released).
    credits_held = models.BigIntegerField(default=0)
    # Optional budget per calendar month (UTC), in micro-credits; null = none.
    monthly_spend_cap = models.PositiveBigIntegerField(null=True, blank=True)
    # Owners get one email per month when the balance falls below this; null = never.
    low_balance_threshold = models.PositiveBigIntegerField(null=True, blank=True)
    low_balance_notified_month = models.DateField(null=True, blank=True)
    # Defaults for keys that set no limit of their own; null = none.
    default_rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    default_max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    # Fair share of a shared queue (generations/fairness.py): a higher tier is served
    # first; within a tier, organizations are served in proportion to their weight.
    queue_priority = models.SmallIntegerField(
        default=0, help_text="Higher tiers are served first (default 0)."
    )
    queue_weight = models.PositiveSmallIntegerField(
        default=1,
        help_text="Share of the workers within a tier, relative to other organizations.",
    )
    # Moderation (generations/moderation/): an owner may make the organization stricter
    # than the operator's policy asks, never looser: `moderation: low` is applied as `auto`.
    moderation_strict = models.BooleanField(
        "always apply the whole content policy",
        default=False,
        db_default=False,  # rows inserted in SQL (tests/scale_seed.py) get it too
        help_text="Requests that ask for moderation 'low' are checked as 'auto'.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(queue_weight__gte=1), name="queue_weight_positive"),
            # The last line of defence: no race may ever spend money that is not there.
            models.CheckConstraint(
                condition=Q(credit_balance__gte=0), name="balance_never_negative"
            ),
            models.CheckConstraint(condition=Q(credits_held__gte=0), name="held_never_negative"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="one_membership_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class APIKey(models.Model):
    """An API key. The secret itself is never stored: only a lookup prefix, an
    HMAC-SHA256 digest of the whole secret and its last four characters."""

    class Scope(models.TextChoices):
        GENERATE = "generate"
        MANAGE = "manage"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="api_keys"
    )
    # The creator's role when the key was made (or handed to them): demoting them below
    # it revokes or transfers the key (accounts/members.py).
    created_with_role = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=100, blank=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.GENERATE)
    prefix = models.CharField(max_length=32, unique=True)
    digest = models.CharField(max_length=64)
    last_four = models.CharField(max_length=4)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Suspended by the content policy (too many blocked requests within an hour): refused
    # with 403 key_suspended until the operator lifts it in the admin.
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspended_reason = models.CharField(max_length=300, blank=True, db_default="")
    # Catalog model ids this key may use; empty = every model.
    allowed_models = models.JSONField(default=list, blank=True)
    # Client networks (CIDR, IPv4 or IPv6) this key may be used from; empty = anywhere.
    allowed_ips = models.JSONField(default=list, blank=True)
    # Per-key limits, stored here and enforced by the billing/rate-limit layer; null = none.
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    max_concurrent = models.PositiveIntegerField(null=True, blank=True)
    monthly_spend_cap = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="micro-credits"
    )
    # After a rotation the old secret keeps working until previous_expires_at; its lookup
    # prefix and digest stay afterwards so that it is refused with a clear reason.
    previous_prefix = models.CharField(max_length=32, unique=True, null=True, blank=True)
    previous_digest = models.CharField(max_length=64, blank=True)
    previous_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name or 'key'} ({self.redacted})"

    @property
    def redacted(self) -> str:
        return f"{self.prefix}…{self.last_four}"

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def status(self) -> str:
        """active, suspended, expired or revoked (revocation wins)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        if self.suspended_at is not None:
            return "suspended"
        return "active"

    def allows_address(self, address: str) -> bool:
        """Whether a request from `address` may use this key (its allowlist)."""
        if not self.allowed_ips:
            return True
        try:
            client = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped:
            client = client.ipv4_mapped
        return any(client in ipaddress.ip_network(net) for net in self.allowed_ips)

    def allows_model(self, model_id: str) -> bool:
        """Whether this key may use the catalog model ``model_id`` (a canonical id)."""
        return not self.allowed_models or model_id in self.allowed_models


class Invitation(models.Model):
    """An invitation to join an organization, sent by email as a one-time link.

    Like API keys, the token itself is never stored: only its HMAC-SHA256 digest.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField()
    role = models.CharField(
        max_length=16, choices=Membership.Role.choices, default=Membership.Role.MEMBER
    )
    digest = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"])]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.organization} ({self.status})"

    @property
    def status(self) -> str:
        """pending, accepted, revoked or expired."""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` on a request that creates or charges. The same key
    with the same request, within the retention, gets back what the first request made
    (`reference`, e.g. a generation id) instead of doing it again."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body of the first request.
    fingerprint = models.CharField(max_length=64)
    reference = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "key"], name="one_idempotency_key_per_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization_id}:{self.key} -> {self.reference}"


class AuditEntry(models.Model):
    """Who removed whom (or who left, or who was demoted) and what became of the keys
    that person had created: revoked, or transferred to the owner who removed them.
    Shown on the Organization page and in the admin; written only by accounts/members.py.
    Emails are copied so that the entry still reads right after an account is deleted."""

    class Action(models.TextChoices):
        REMOVED = "member_removed"
        LEFT = "member_left"
        DEMOTED = "member_demoted"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="audit_entries"
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    actor_email = models.EmailField()
    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    subject_email = models.EmailField()
    detail = models.CharField(max_length=200, blank=True)
    # [{"id", "name", "redacted"}] of the keys revoked and of those transferred.
    keys_revoked = models.JSONField(default=list, blank=True)
    keys_transferred = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.actor_email}: {self.get_action_display()} {self.subject_email}"


# The money and usage records and the webhook models live in their own modules; imported
# here so that Django registers them with the app's models.
from accounts.billing_models import (  # noqa: E402, F401
    CreditEntry,
    MonthlySpend,
    UsageDay,
    UsageRollup,
)
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint  # noqa: E402, F401
