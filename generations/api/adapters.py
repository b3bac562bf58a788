"""The adapters resource: ``POST /v1/adapters`` (multipart upload), ``GET /v1/adapters``,
``GET`` and ``DELETE /v1/adapters/{id}``. Uploading and deleting need a ``manage`` key (or
a signed-in person); any key of the organization may list and use them. Another
organization's adapter is a 404 on every endpoint. Thin: the checks and the writes are
generations/adapters/'s."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors as account_selectors
from accounts.api.authentication import BearerKeyAuthentication, HasKeyOrSession, HasManageAccess
from accounts.models import APIKey
from generations.adapters import selectors
from generations.adapters.models import Adapter
from generations.adapters.services import adapter_create, adapter_delete
from imagehub import errors


def adapter_payload(adapter: Adapter) -> dict:
    return {
        "id": adapter.pk,
        "object": "adapter",
        "name": adapter.name,
        "base_model": adapter.base_model,
        "bytes": adapter.bytes,
        "created_at": int(adapter.created_at.timestamp()),
        "status": adapter.status,
        "shared": adapter.shared,
        "format": adapter.layout,
        "rank": adapter.rank,
        "target_modules": adapter.target_modules,
        "components": adapter.components,
        "sha256": adapter.sha256,
        "last_used_at": (
            int(adapter.last_used_at.timestamp()) if adapter.last_used_at is not None else None
        ),
        **({"error": adapter.error_message} if adapter.error_message else {}),
    }


def _organization(request):
    if isinstance(request.auth, APIKey):
        return request.auth.organization
    return account_selectors.caller_for_request(request).organization


class _UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .safetensors LoRA (diffusers/PEFT or kohya)")
    base_model = serializers.CharField(max_length=200, help_text="A catalog model id")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


ADAPTER = inline_serializer(
    "Adapter",
    {
        "id": serializers.CharField(),
        "object": serializers.CharField(),
        "name": serializers.CharField(),
        "base_model": serializers.CharField(),
        "bytes": serializers.IntegerField(),
        "created_at": serializers.IntegerField(),
        "status": serializers.CharField(),
        "shared": serializers.BooleanField(),
    },
)


class AdapterListView(APIView):
    authentication_classes = [BearerKeyAuthentication, SessionAuthentication]
    parser_classes = [MultiPartParser, FormParser]

    def get_permissions(self):
        return [HasManageAccess()] if self.request.method == "POST" else [HasKeyOrSession()]

    @extend_schema(
        summary="List your organization's adapters and the shared ones",
        operation_id="list_adapters",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        adapters = selectors.adapter_list(organization=_organization(request))
        return Response({"object": "list", "data": [adapter_payload(a) for a in adapters]})

    @extend_schema(
        summary="Upload a LoRA adapter",
        operation_id="create_adapter",
        request={"multipart/form-data": _UploadSerializer},
        responses={201: ADAPTER},
        description="Checked before it is stored: a .safetensors file (never a pickle) of "
        "at most IMAGEHUB_MAX_ADAPTER_BYTES whose tensors adapt modules of the base model's "
        "denoiser or text encoders; else a 400 naming `file` or `base_model`.",
    )
    def post(self, request):
        caller = account_selectors.caller_for_request(request)
        upload = request.FILES.get("file")
        if upload is None:
            raise errors.InvalidRequest(
                "Send the adapter as the multipart file field 'file'.", param="file"
            )
        base_model = request.data.get("base_model") or ""
        if not base_model:
            raise errors.InvalidRequest(
                "Name the catalog model the adapter was trained for in 'base_model'.",
                param="base_model",
            )
        adapter = adapter_create(
            organization=caller.organization,
            user=caller.user,
            name=request.data.get("name") or "",
            base_model=base_model,
            upload=upload,
        )
        return Response(adapter_payload(adapter), status=status.HTTP_201_CREATED)


ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="adp_…")


class AdapterDetailView(APIView):
    authentication_classes = [BearerKeyAuthentication, SessionAuthentication]

    def get_permissions(self):
        return [HasManageAccess()] if self.request.method == "DELETE" else [HasKeyOrSession()]

    def _get(self, request, pk: str) -> Adapter:
        adapter = selectors.adapter_get_visible(organization=_organization(request), adapter_id=pk)
        if adapter is None:
            raise errors.NotFound(
                f"No adapter with id '{pk}'.", param="id", code="adapter_not_found"
            )
        return adapter

    @extend_schema(
        summary="Get an adapter", operation_id="retrieve_adapter", responses={200: ADAPTER}
    )
    def get(self, request, pk: str):
        return Response(adapter_payload(self._get(request, pk)))

    @extend_schema(
        summary="Delete an adapter",
        operation_id="delete_adapter",
        responses={200: OpenApiTypes.OBJECT},
        description="Generations that used it keep their record of it; queued ones that name "
        "it fail with `adapter_error` and are not charged.",
    )
    def delete(self, request, pk: str):
        caller = account_selectors.caller_for_request(request)
        adapter = self._get(request, pk)
        adapter_delete(adapter=adapter, organization=caller.organization)
        return Response({"id": pk, "object": "adapter.deleted", "deleted": True})
