"""Request validation and response shapes of the management API (keys, organization,
members, webhooks) and the query of /v1/usage.

Every invalid field becomes a 400 that names it as `param` (see imagehub.errors).
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts import usage
from accounts.hooks import hooks
from accounts.models import APIKey, Membership, Organization
from accounts.services import MAX_BIGINT, MAX_EXPIRY_DAYS, MAX_INT, MAX_ROTATION_GRACE_SECONDS
from accounts.webhooks import endpoints as webhook_endpoints
from accounts.webhooks.events import EVENTS as WEBHOOK_EVENTS
from accounts.webhooks.models import WebhookDelivery

# /v1/usage pages.
MAX_PAGE = 1000
# Far past any real history; keeps the row offset a sane integer.
MAX_PAGE_NUMBER = 1_000_000


class StrictSerializer(serializers.Serializer):
    """Rejects parameters it does not know, naming the first one."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            for name in data:
                if name not in self.fields or self.fields[name].read_only:
                    raise serializers.ValidationError({name: f"Unknown parameter: '{name}'."})
        return super().to_internal_value(data)


class LimitsSerializer(StrictSerializer):
    """Per-key limits (stored now, enforced by the billing layer); null = no limit."""

    rpm_limit = serializers.IntegerField(
        min_value=0, max_value=MAX_INT, allow_null=True, required=False,
        help_text="Requests per minute.",
    )  # fmt: skip
    max_concurrent = serializers.IntegerField(
        min_value=0, max_value=MAX_INT, allow_null=True, required=False,
        help_text="Generations in flight at once.",
    )  # fmt: skip
    monthly_spend_cap = serializers.IntegerField(
        min_value=0, max_value=MAX_BIGINT, allow_null=True, required=False,
        help_text="Micro-credits per calendar month.",
    )  # fmt: skip


def _future(value):
    if value is not None and value <= timezone.now():
        raise serializers.ValidationError("expires_at must be in the future.")
    return value


class _KeySettingsSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, allow_blank=True, required=False)
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        max_length=100,
        required=False,
        help_text="Catalog model ids (or aliases) this key may use; empty = every model.",
    )
    limits = LimitsSerializer(required=False)
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, validators=[_future], help_text="null = never."
    )
    allowed_ips = serializers.ListField(
        child=serializers.CharField(max_length=64),
        max_length=100,
        required=False,
        help_text="Client networks (CIDR, IPv4 or IPv6) this key may be used from; "
        "empty = anywhere. Elsewhere the key gets 403 naming the address.",
    )

    def validate_allowed_models(self, value: list[str]) -> list[str]:
        ids: list[str] = []
        for model_id in value:
            resolved = hooks.resolve_model(model_id) if model_id.strip() else None
            if resolved is None:
                raise serializers.ValidationError(f"The model '{model_id}' does not exist.")
            if resolved not in ids:
                ids.append(resolved)
        return ids


class APIKeyCreateSerializer(_KeySettingsSerializer):
    scope = serializers.ChoiceField(choices=APIKey.Scope.choices, default=APIKey.Scope.GENERATE)
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=MAX_EXPIRY_DAYS, required=False, allow_null=True
    )

    def validate(self, attrs):
        days = attrs.pop("expires_in_days", None)
        if days is not None:
            if attrs.get("expires_at") is not None:
                raise serializers.ValidationError(
                    {"expires_in_days": "Give either expires_at or expires_in_days, not both."}
                )
            attrs["expires_at"] = timezone.now() + dt.timedelta(days=days)
        return attrs


class APIKeyUpdateSerializer(_KeySettingsSerializer):
    pass


class APIKeyRotateSerializer(StrictSerializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=MAX_ROTATION_GRACE_SECONDS,
        default=86400,
        help_text="How long the old secret keeps working (0 = stops at once; at most 30 days).",
    )


class APIKeySerializer(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    redacted = serializers.CharField(read_only=True)
    status = serializers.ChoiceField(choices=["active", "expired", "revoked"], read_only=True)
    limits = LimitsSerializer(source="*", read_only=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, allow_null=True)

    class Meta:
        model = APIKey
        fields = [
            "object",
            "id",
            "name",
            "scope",
            "redacted",
            "prefix",
            "last_four",
            "status",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "previous_expires_at",
            "allowed_models",
            "allowed_ips",
            "limits",
            "created_by",
        ]
        read_only_fields = fields

    def get_object(self, key) -> str:
        return "api_key"


class APIKeyWithSecretSerializer(APIKeySerializer):
    """A key as answered to its creation or rotation: the only time the secret is shown."""

    secret = serializers.SerializerMethodField(
        help_text="The secret. Shown only in this response; store it now."
    )

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, key) -> str | None:
        return self.context["secret"]


class APIKeyListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = APIKeySerializer(many=True)


class OrganizationSerializer(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField(help_text="Your role in this organization.")

    class Meta:
        model = Organization
        fields = [
            "object", "id", "name", "slug", "credit_balance", "moderation_strict", "created_at",
            "role",
        ]  # fmt: skip
        read_only_fields = fields

    def get_object(self, org) -> str:
        return "organization"

    def get_role(self, org) -> str:
        return self.context["role"]


class MemberSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email", read_only=True)
    joined = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ["email", "role", "joined"]
        read_only_fields = fields


class MemberListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = MemberSerializer(many=True)


class WebhookSettingsSerializer(StrictSerializer):
    url = serializers.CharField(
        max_length=2000, allow_blank=True, required=False,
        help_text="Default URL for the organization's generations; blank = none (then only "
        "requests that carry `webhook` get deliveries).",
    )  # fmt: skip
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS), required=False, max_length=6,
        help_text="Events sent by default: queued, started, partial, completed, failed, "
        "canceled; empty = all.",
    )  # fmt: skip


class WebhookRotateSerializer(StrictSerializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=webhook_endpoints.MAX_ROTATION_GRACE_SECONDS,
        default=86400,
        help_text="How long the old secret keeps signing too (0 = stops at once; at most 30 days).",
    )


class WebhookEndpointSerializer(serializers.Serializer):
    object = serializers.CharField(default="webhook")
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    secret_redacted = serializers.CharField(allow_null=True)
    secret_created_at = serializers.DateTimeField(allow_null=True)
    previous_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Until then the previous secret signs deliveries too."
    )
    secret = serializers.CharField(
        allow_null=True,
        help_text="The signing secret: only in the answer that created or rotated it.",
    )

    @staticmethod
    def present(endpoint, secret: str | None = None) -> dict:
        if endpoint is None:
            return {
                "object": "webhook",
                "url": "",
                "events": [],
                "secret_redacted": None,
                "secret_created_at": None,
                "previous_expires_at": None,
                "secret": None,
            }
        return WebhookEndpointSerializer(
            {
                "url": endpoint.url,
                "events": endpoint.events,
                "secret_redacted": endpoint.secret_hint,
                "secret_created_at": endpoint.secret_created_at,
                "previous_expires_at": endpoint.previous_expires_at,
                "secret": secret,
            }
        ).data


class WebhookDeliverySerializer(serializers.ModelSerializer):
    object = serializers.SerializerMethodField()

    class Meta:
        model = WebhookDelivery
        fields = [
            "object",
            "id",
            "msg_id",
            "generation_id",
            "event",
            "url",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_object(self, delivery) -> str:
        return "webhook.delivery"


class WebhookDeliveryListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = WebhookDeliverySerializer(many=True)
    has_more = serializers.BooleanField()
    next_before = serializers.IntegerField(
        allow_null=True, help_text="Pass as `before` for the next (older) page."
    )


@extend_schema_field(OpenApiTypes.STR)
class MomentField(serializers.Field):
    """A date (YYYY-MM-DD), an ISO 8601 time or a Unix timestamp; UTC unless it says."""

    def to_internal_value(self, value):
        value = str(value)
        try:
            if value.isdigit():
                moment = dt.datetime.fromtimestamp(int(value), tz=dt.UTC)
            else:
                moment = parse_datetime(value)
                if moment is None and (day := parse_date(value)) is not None:
                    moment = dt.datetime.combine(day, dt.time())
        except (ValueError, OverflowError, OSError):  # well-formed but impossible
            moment = None
        if moment is None:
            raise serializers.ValidationError(
                f"'{value}' is not a date: use YYYY-MM-DD, an ISO 8601 time or a Unix timestamp."
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class UsageQuerySerializer(serializers.Serializer):
    start = MomentField(required=False, help_text="inclusive; default 30 days ago")
    end = MomentField(required=False, help_text="exclusive; default end of today (UTC)")
    bucket = serializers.ChoiceField(choices=("day", "hour"), default="day")
    group_by = serializers.CharField(
        required=False, default="", help_text="comma-separated: model, key, user, adapters"
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=100)
    page = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_NUMBER, default=1)
    format = serializers.ChoiceField(choices=("json", "csv"), default="json")

    def validate_group_by(self, value: str) -> list[str]:
        groups = [g.strip() for g in value.split(",") if g.strip()]
        unknown = [g for g in groups if g not in usage.GROUPS]
        if unknown:
            raise serializers.ValidationError(
                f"Cannot group by {unknown[0]!r}: use model, key, user or adapters."
            )
        return groups

    def validate(self, attrs):
        default_start, default_end = usage.default_window()
        attrs.setdefault("start", default_start)
        attrs.setdefault("end", default_end)
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "'end' must be after 'start'."})
        return attrs
