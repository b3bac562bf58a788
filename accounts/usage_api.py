"""GET /v1/credits and GET /v1/usage (JSON, paginated, or CSV) for tenants."""

from __future__ import annotations

import csv
import datetime as dt
import io

from django.http import HttpResponse
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, usage
from accounts.authentication import BearerKeyAuthentication
from accounts.models import APIKey

MAX_PAGE = 1000
# Far past any real history; keeps the row offset a sane integer.
MAX_PAGE_NUMBER = 1_000_000


class HasKeyOrSession(BasePermission):
    """Any key of the organization (either scope) or a signed-in person."""

    def has_permission(self, request, view):
        if isinstance(request.auth, APIKey):
            return True
        return bool(request.user is not None and request.user.is_authenticated)


class TenantView(APIView):
    authentication_classes = [BearerKeyAuthentication, SessionAuthentication]
    permission_classes = [HasKeyOrSession]


class CreditsView(TenantView):
    @extend_schema(
        summary="Balance, money held, spend this month and caps",
        operation_id="get_credits",
        responses={200: dict},
    )
    def get(self, request):
        caller = selectors.caller_for_request(request)
        key = request.auth if isinstance(request.auth, APIKey) else None
        return Response(usage.credits_summary(organization=caller.organization, api_key=key))


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
        required=False, default="", help_text="comma-separated: model, key, user"
    )
    limit = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, default=100)
    page = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_NUMBER, default=1)
    format = serializers.ChoiceField(choices=("json", "csv"), default="json")

    def validate_group_by(self, value: str) -> list[str]:
        groups = [g.strip() for g in value.split(",") if g.strip()]
        unknown = [g for g in groups if g not in usage.GROUPS]
        if unknown:
            raise serializers.ValidationError(
                f"Cannot group by {unknown[0]!r}: use model, key or user."
            )
        return groups

    def validate(self, attrs):
        default_start, default_end = usage.default_window()
        attrs.setdefault("start", default_start)
        attrs.setdefault("end", default_end)
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": "'end' must be after 'start'."})
        return attrs


class UsageView(TenantView):
    @extend_schema(
        summary="Usage per day or hour, optionally grouped by model, key or user",
        operation_id="get_usage",
        parameters=[UsageQuerySerializer],
        responses={200: dict},
    )
    def get(self, request):
        caller = selectors.caller_for_request(request)
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        start, end, bucket, group_by = (params[k] for k in ("start", "end", "bucket", "group_by"))
        rows = usage.usage_rows(
            organization=caller.organization,
            start=start,
            end=end,
            bucket=bucket,
            group_by=group_by,
            only_keys_of=None if caller.manages_all_keys else caller.user,
        )
        if params["format"] == "csv":
            return _csv(rows, group_by)
        limit, page = params["limit"], params["page"]
        window = list(rows[(page - 1) * limit : page * limit + 1])
        return Response(
            {
                "object": "list",
                "bucket": bucket,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "group_by": group_by,
                "data": [_row(r) for r in window[:limit]],
                "page": page,
                "has_more": len(window) > limit,
            }
        )


def _row(row: dict) -> dict:
    out = {"bucket_start": row["bucket_start"].isoformat()}
    if "model" in row:
        out["model"] = row["model"]
    if "api_key_id" in row:
        out["api_key_id"] = row["api_key_id"]
    if "user__email" in row:
        out["user"] = row["user__email"]
    for metric in usage.METRICS[:-1]:
        out[metric] = row[metric] or 0
    out["avg_latency_ms"] = (
        round((row["latency_ms_total"] or 0) / row["requests"]) if row["requests"] else None
    )
    return out


def _csv(rows, group_by: list[str]) -> HttpResponse:
    buffer = io.StringIO()
    writer = None
    for row in rows:
        item = _row(row)
        if writer is None:
            writer = csv.DictWriter(buffer, fieldnames=list(item))
            writer.writeheader()
        writer.writerow(item)
    if writer is None:
        columns = {"model": "model", "key": "api_key_id", "user": "user"}
        header = ["bucket_start", *(columns[g] for g in group_by), *usage.METRICS[:-1]]
        buffer.write(",".join([*header, "avg_latency_ms"]) + "\n")
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="imagehub-usage.csv"'
    return response
