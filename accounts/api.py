"""The management REST API: API keys and the organization.

Authenticated by a signed-in session (with DRF's CSRF check) or by a ``manage``-scoped
bearer key. Every lookup is scoped to the caller's organization.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services, webhook_delivery, webhooks
from accounts.authentication import BearerKeyAuthentication, HasManageAccess
from accounts.idempotency import from_request as idempotency_from
from accounts.models import WebhookDelivery
from accounts.serializers import (
    APIKeyCreateSerializer,
    APIKeyListSerializer,
    APIKeyRotateSerializer,
    APIKeySerializer,
    APIKeyUpdateSerializer,
    APIKeyWithSecretSerializer,
    MemberListSerializer,
    MemberSerializer,
    OrganizationSerializer,
    WebhookDeliveryListSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
    WebhookRotateSerializer,
    WebhookSettingsSerializer,
)
from imagehub.errors import InvalidRequest, PermissionError_

_ERRORS = {
    400: OpenApiResponse(description="Invalid input; `error.param` names the field."),
    401: OpenApiResponse(description="Missing, invalid, revoked, expired or rotated key."),
    403: OpenApiResponse(description="A 'generate' key, or a role that may not do this."),
}
_NOT_FOUND = {404: OpenApiResponse(description="No such key in your organization.")}


class ManagementView(APIView):
    authentication_classes = [BearerKeyAuthentication, SessionAuthentication]
    permission_classes = [HasManageAccess]
    caller: selectors.Caller

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.caller = selectors.caller_for_request(request)

    def get_key(self, key_id: int):
        return selectors.api_key_get(caller=self.caller, key_id=key_id)


def _with_secret(key, secret: str, status_code: int) -> Response:
    body = APIKeyWithSecretSerializer(key, context={"secret": secret}).data
    return Response(body, status=status_code)


class KeyListView(ManagementView):
    @extend_schema(
        summary="List API keys",
        operation_id="list_api_keys",
        description="Newest first. Owners and admins see every key of the organization, "
        "members the keys they created. Secrets are never included.",
        responses={200: APIKeyListSerializer, **_ERRORS},
        tags=["keys"],
    )
    def get(self, request):
        keys = selectors.api_key_list(caller=self.caller)
        return Response({"object": "list", "data": APIKeySerializer(keys, many=True).data})

    @extend_schema(
        summary="Create an API key",
        operation_id="create_api_key",
        description="The response carries the secret in `secret`; it is never shown again. "
        "With an `Idempotency-Key` header, a retry of the same request within 24 h returns the "
        "key it created (200, `Idempotent-Replayed: true`, `secret` null) instead of a second key.",
        request=APIKeyCreateSerializer,
        responses={201: APIKeyWithSecretSerializer, **_ERRORS},
        tags=["keys"],
    )
    def post(self, request):
        params = APIKeyCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        key, secret = services.api_key_create(
            organization=self.caller.organization,
            created_by=self.caller.user,
            idempotency=idempotency_from(request),
            **params.validated_data,
        )
        if secret is None:
            # A retry with the same Idempotency-Key: the key it created, whose secret was
            # shown once, to the first request.
            response = _with_secret(key, None, status.HTTP_200_OK)
            response["Idempotent-Replayed"] = "true"
            return response
        return _with_secret(key, secret, status.HTTP_201_CREATED)


class KeyDetailView(ManagementView):
    @extend_schema(
        summary="Retrieve an API key",
        operation_id="retrieve_api_key",
        responses={200: APIKeySerializer, **_ERRORS, **_NOT_FOUND},
        tags=["keys"],
    )
    def get(self, request, pk: int):
        return Response(APIKeySerializer(self.get_key(pk)).data)

    @extend_schema(
        summary="Update an API key",
        operation_id="update_api_key",
        description="Change name, allowed_models, limits (only those given) or expires_at.",
        request=APIKeyUpdateSerializer,
        responses={200: APIKeySerializer, **_ERRORS, **_NOT_FOUND},
        tags=["keys"],
    )
    def patch(self, request, pk: int):
        key = self.get_key(pk)
        params = APIKeyUpdateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        key = services.api_key_update(key=key, **params.validated_data)
        return Response(APIKeySerializer(key).data)

    @extend_schema(
        summary="Revoke an API key",
        operation_id="revoke_api_key",
        description="Revocation is immediate, for the current and any previous secret.",
        responses={200: APIKeySerializer, **_ERRORS, **_NOT_FOUND},
        tags=["keys"],
    )
    def delete(self, request, pk: int):
        key = services.api_key_revoke(key=self.get_key(pk))
        return Response(APIKeySerializer(key).data)


class KeyRotateView(ManagementView):
    @extend_schema(
        summary="Rotate an API key",
        operation_id="rotate_api_key",
        description="Issues a new secret for the same key (returned once in `secret`). The "
        "old secret keeps working until `previous_expires_at`, then gets 401 "
        "`rotated_api_key`.",
        request=APIKeyRotateSerializer,
        responses={200: APIKeyWithSecretSerializer, **_ERRORS, **_NOT_FOUND},
        tags=["keys"],
    )
    def post(self, request, pk: int):
        key = self.get_key(pk)
        params = APIKeyRotateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        key, secret = services.api_key_rotate(key=key, **params.validated_data)
        return _with_secret(key, secret, status.HTTP_200_OK)


class OrganizationView(ManagementView):
    @extend_schema(
        summary="Your organization",
        operation_id="retrieve_organization",
        responses={200: OrganizationSerializer, **_ERRORS},
        tags=["organization"],
    )
    def get(self, request):
        org = self.caller.organization
        return Response(OrganizationSerializer(org, context={"role": self.caller.role}).data)


class MemberListView(ManagementView):
    @extend_schema(
        summary="Members of your organization",
        operation_id="list_organization_members",
        responses={200: MemberListSerializer, **_ERRORS},
        tags=["organization"],
    )
    def get(self, request):
        members = selectors.membership_list(organization=self.caller.organization)
        return Response({"object": "list", "data": MemberSerializer(members, many=True).data})


_WEBHOOK_ERRORS = {
    **_ERRORS,
    403: OpenApiResponse(description="A 'generate' key, or a member (owners and admins only)."),
}
_DELIVERY_NOT_FOUND = {404: OpenApiResponse(description="No such delivery in your organization.")}


class WebhookView(ManagementView):
    def check_manager(self) -> None:
        if self.caller.role not in selectors.MANAGER_ROLES:
            raise PermissionError_("Only owners and admins can change webhooks.")

    @extend_schema(
        summary="Your organization's webhook",
        operation_id="retrieve_webhook",
        description="The default URL and events, and the signing secret (redacted).",
        responses={200: WebhookEndpointSerializer, **_ERRORS},
        tags=["webhooks"],
    )
    def get(self, request):
        endpoint = webhooks.webhook_endpoint_get(organization_id=self.caller.organization.pk)
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
        endpoint, secret = webhooks.webhook_endpoint_set(
            organization=self.caller.organization, **params.validated_data
        )
        return Response(
            WebhookEndpointSerializer.present(endpoint, secret),
            status=status.HTTP_201_CREATED if secret else status.HTTP_200_OK,
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
        endpoint, secret = webhooks.webhook_secret_rotate(
            organization=self.caller.organization, **params.validated_data
        )
        return Response(WebhookEndpointSerializer.present(endpoint, secret))


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
        responses={200: WebhookDeliveryListSerializer, **_ERRORS},
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
            webhook_delivery.delivery_list(
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
        delivery = webhook_delivery.delivery_redeliver(
            organization=self.caller.organization, delivery_id=pk
        )
        return Response(WebhookDeliverySerializer(delivery).data)
