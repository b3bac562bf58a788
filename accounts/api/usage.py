"""GET /v1/credits and GET /v1/usage (JSON, paginated, or CSV) for tenants."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, usage
from accounts.api.authentication import BearerKeyAuthentication, HasKeyOrSession
from accounts.api.serializers import UsageQuerySerializer
from accounts.models import APIKey


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
    if "adapters" in row:
        # The adapter set's ids joined by "+", "" for requests without adapters.
        out["adapters"] = row["adapters"]
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
        columns = {"model": "model", "key": "api_key_id", "user": "user", "adapters": "adapters"}
        header = ["bucket_start", *(columns[g] for g in group_by), *usage.METRICS[:-1]]
        buffer.write(",".join([*header, "avg_latency_ms"]) + "\n")
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="imagehub-usage.csv"'
    return response
