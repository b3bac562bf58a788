"""The API keys endpoints: /v1/keys, /v1/keys/{id} and /v1/keys/{id}/rotate."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from accounts import selectors, services
from accounts.api.base import ERRORS, ManagementView
from accounts.api.serializers import (
    APIKeyCreateSerializer,
    APIKeyListSerializer,
    APIKeyRotateSerializer,
    APIKeySerializer,
    APIKeyUpdateSerializer,
    APIKeyWithSecretSerializer,
)
from accounts.idempotency import from_request as idempotency_from

_NOT_FOUND = {404: OpenApiResponse(description="No such key in your organization.")}


def _with_secret(key, secret: str, status_code: int) -> Response:
    body = APIKeyWithSecretSerializer(key, context={"secret": secret}).data
    # The secret must stay out of every cache (browsers, proxies).
    return Response(body, status=status_code, headers={"Cache-Control": "no-store"})


class KeyListView(ManagementView):
    @extend_schema(
        summary="List API keys",
        operation_id="list_api_keys",
        description="Newest first. Owners and admins see every key of the organization, "
        "members the keys they created. Secrets are never included.",
        responses={200: APIKeyListSerializer, **ERRORS},
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
        responses={201: APIKeyWithSecretSerializer, **ERRORS},
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
        responses={200: APIKeySerializer, **ERRORS, **_NOT_FOUND},
        tags=["keys"],
    )
    def get(self, request, pk: int):
        return Response(APIKeySerializer(self.get_key(pk)).data)

    @extend_schema(
        summary="Update an API key",
        operation_id="update_api_key",
        description="Change name, allowed_models, limits (only those given) or expires_at.",
        request=APIKeyUpdateSerializer,
        responses={200: APIKeySerializer, **ERRORS, **_NOT_FOUND},
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
        responses={200: APIKeySerializer, **ERRORS, **_NOT_FOUND},
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
        responses={200: APIKeyWithSecretSerializer, **ERRORS, **_NOT_FOUND},
        tags=["keys"],
    )
    def post(self, request, pk: int):
        key = self.get_key(pk)
        params = APIKeyRotateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        key, secret = services.api_key_rotate(key=key, **params.validated_data)
        return _with_secret(key, secret, status.HTTP_200_OK)
