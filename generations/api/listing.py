"""GET /v1/images/generations: a tenant's generations, newest first, filtered, with
cursor pagination (stable under inserts: a cursor names the last item seen)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from rest_framework import serializers

from generations.models import Generation

MAX_LIMIT = 100


class GenerationListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Generation.Status.choices, required=False, help_text="only this status"
    )
    created_after = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive")
    created_before = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive")
    api_key = serializers.IntegerField(
        required=False, min_value=1, max_value=2**63 - 1, help_text="only this key's (its id)"
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=20)
    after = serializers.CharField(
        required=False, max_length=200, help_text="the `next_cursor` of the previous page"
    )

    def validate_after(self, value: str) -> tuple[datetime, str]:
        try:
            created, _, generation_id = (
                base64.urlsafe_b64decode(value.encode()).decode().partition("|")
            )
            return datetime.fromisoformat(created), generation_id
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise serializers.ValidationError("Not a cursor of this list.") from None


def cursor_of(generation: Generation) -> str:
    raw = f"{generation.created_at.isoformat()}|{generation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def page(rows, query: dict) -> tuple[list[Generation], bool]:
    """One page of `rows` (an organization's generations) under the validated query:
    the items and whether more follow."""
    if "status" in query:
        rows = rows.filter(status=query["status"])
    if "created_after" in query:
        rows = rows.filter(created_at__gt=query["created_after"])
    if "created_before" in query:
        rows = rows.filter(created_at__lt=query["created_before"])
    if "api_key" in query:
        rows = rows.filter(api_key_id=query["api_key"])
    if "after" in query:
        created, generation_id = query["after"]
        rows = rows.filter(created_at__lte=created).exclude(
            created_at=created, id__gte=generation_id
        )
    items = list(rows.order_by("-created_at", "-id")[: query["limit"] + 1])
    return items[: query["limit"]], len(items) > query["limit"]
