"""The webhook endpoints: the organization's default webhook (/v1/webhook), its signing
secret (/v1/webhook/rotate), the delivery log and redelivery (/v1/webhook/deliveries).
Owners and admins change things; members read."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from accounts import selectors
from accounts.api.base import ERRORS, ManagementView
from accounts.api.serializers import (
    WebhookDeliveryListSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
    WebhookRotateSerializer,
    WebhookSettingsSerializer,
)
from accounts.webhooks.delivery import delivery_list, delivery_redeliver
from accounts.webhooks.endpoints import (
    webhook_endpoint_get,
    webhook_endpoint_set,
    webhook_secret_rotate,
)
from accounts.webhooks.models import WebhookDelivery
from imagehub.errors import InvalidRequest, PermissionError_

_WEBHOOK_ERRORS = {
    **ERRORS,
    403: OpenApiResponse(description="A 'generate' key, or a member (owners and admins only)."),
}
_DELIVERY_NOT_FOUND = {404: OpenApiResponse(description="No such delivery in your organization.")}


def _no_store(response: Response) -> Response:
    """A response that may carry a signing secret stays out of every cache."""
    response["Cache-Control"] = "no-store"
    return response


class WebhookView(ManagementView):
    def check_manager(self) -> None:
        if self.caller.role not in selectors.MANAGER_ROLES:
            raise PermissionError_("Only owners and admins can change webhooks.")

    @extend_schema(
        summary="Your organization's webhook",
        operation_id="retrieve_webhook",
        description="The default URL and events, and the signing secret (redacted).",
        responses={200: WebhookEndpointSerializer, **ERRORS},
        tags=["webhooks"],
    )
    def get(self, request):
        endpoint = webhook_endpoint_get(organization_id=self.caller.organization.pk)
        return Response(WebhookEndpointSerializer.present(endpoint))

    @extend_schema(
        summary="Set your organization's webhook",
        operation_id="update_webhook",
        description="Sets the default `url` (blank = none) and `events` (empty = all); fields "
        "left out stay. The first call creates the signing secret and returns it in `secret` "
        "(201), once; later calls answer 200 with `secret` null. Deliveries are signed by the "
        "Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`).",
        request=WebhookSettingsSerializer,
        responses={
            200: WebhookEndpointSerializer,
            201: WebhookEndpointSerializer,
            **_WEBHOOK_ERRORS,
        },
        tags=["webhooks"],
    )
    def put(self, request):
        self.check_manager()
        params = WebhookSettingsSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_set(
            organization=self.caller.organization, **params.validated_data
        )
        return _no_store(
            Response(
                WebhookEndpointSerializer.present(endpoint, secret),
                status=status.HTTP_201_CREATED if secret else status.HTTP_200_OK,
            )
        )

    @extend_schema(
        summary="Change your organization's webhook",
        operation_id="partial_update_webhook",
        description="The same as PUT: fields left out stay.",
        request=WebhookSettingsSerializer,
        responses={
            200: WebhookEndpointSerializer,
            201: WebhookEndpointSerializer,
            **_WEBHOOK_ERRORS,
        },
        tags=["webhooks"],
    )
    def patch(self, request):
        return self.put(request)


class WebhookRotateView(WebhookView):
    # POST only: the GET/PUT/PATCH of WebhookView are not this resource's (a PUT here
    # would change the webhook; a GET/PUT on a delivery was a 500).
    http_method_names = ["post", "options"]

    @extend_schema(
        summary="Rotate the webhook signing secret",
        operation_id="rotate_webhook_secret",
        description="A new secret, returned once in `secret`. Until `previous_expires_at` "
        "deliveries carry a signature by each secret, so receivers can switch at leisure.",
        request=WebhookRotateSerializer,
        responses={200: WebhookEndpointSerializer, **_WEBHOOK_ERRORS},
        tags=["webhooks"],
    )
    def post(self, request):
        self.check_manager()
        params = WebhookRotateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        endpoint, secret = webhook_secret_rotate(
            organization=self.caller.organization, **params.validated_data
        )
        return _no_store(Response(WebhookEndpointSerializer.present(endpoint, secret)))


class WebhookDeliveryListView(ManagementView):
    @extend_schema(
        summary="Webhook deliveries",
        operation_id="list_webhook_deliveries",
        description="Newest first: status, attempts, last response code and error. `before` "
        "pages back (pass `next_before`); `status` filters (pending, succeeded, failed).",
        parameters=[
            OpenApiParameter("before", int, description="Only deliveries with a lower id."),
            OpenApiParameter("status", str, enum=["pending", "succeeded", "failed"]),
            OpenApiParameter("limit", int, description="1-100, default 20."),
        ],
        responses={200: WebhookDeliveryListSerializer, **ERRORS},
        tags=["webhooks"],
    )
    def get(self, request):
        def integer(name: str, default: int | None, low: int, high: int) -> int | None:
            raw = request.query_params.get(name)
            if raw in (None, ""):
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                raise InvalidRequest(f"'{name}' must be an integer {low}-{high}.", param=name)
            return int(raw)

        limit = integer("limit", 20, 1, 100)
        state = request.query_params.get("status") or None
        if state not in (None, *WebhookDelivery.Status.values):
            raise InvalidRequest("'status' is pending, succeeded or failed.", param="status")
        rows = list(
            delivery_list(
                organization=self.caller.organization,
                before=integer("before", None, 1, 2**62),
                status=state,
            )[: limit + 1]
        )
        page = rows[:limit]
        return Response(
            {
                "object": "list",
                "data": WebhookDeliverySerializer(page, many=True).data,
                "has_more": len(rows) > limit,
                "next_before": page[-1].pk if len(rows) > limit else None,
            }
        )


class WebhookRedeliverView(WebhookView):
    # POST only: the GET/PUT/PATCH of WebhookView are not this resource's (a PUT here
    # would change the webhook; a GET/PUT on a delivery was a 500).
    http_method_names = ["post", "options"]

    @extend_schema(
        summary="Redeliver a webhook",
        operation_id="redeliver_webhook",
        description="Sends the delivery again now (same `webhook-id`, new timestamp and "
        "signature), with a fresh retry window.",
        request=None,
        responses={200: WebhookDeliverySerializer, **_WEBHOOK_ERRORS, **_DELIVERY_NOT_FOUND},
        tags=["webhooks"],
    )
    def post(self, request, pk: int):
        self.check_manager()
        delivery = delivery_redeliver(organization=self.caller.organization, delivery_id=pk)
        return Response(WebhookDeliverySerializer(delivery).data)
