"""OpenAI's /v1/images/edits and /v1/images/variations.

The same flow as generations (sync, ``Prefer: respond-async``, ``stream``), with a
different request serializer and uploads stored next to the record for the worker.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from generations.edit_serializers import EditRequestSerializer, VariationRequestSerializer
from generations.inputs import generation_create_with_inputs
from generations.models import Generation
from generations.views import ImageGenerationViewSet


class ImageEditViewSet(ImageGenerationViewSet):
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    request_serializer = EditRequestSerializer

    def create_record(self, validated: dict, **fields) -> Generation:
        return generation_create_with_inputs(
            images=validated["inputs"]["images"],
            mask=validated["inputs"]["mask"],
            kind=validated["kind"],
            input_image_tokens=validated["input_image_tokens"],
            **fields,
        )

    @extend_schema(
        request={"multipart/form-data": EditRequestSerializer, "application/json": dict},
        responses={200: dict, 202: dict},
        summary="Edit an image (image-to-image, or inpainting with a mask)",
    )
    def create(self, request):
        return super().create(request)


class ImageVariationViewSet(ImageEditViewSet):
    request_serializer = VariationRequestSerializer

    @extend_schema(
        request={"multipart/form-data": VariationRequestSerializer},
        responses={200: dict, 202: dict},
        summary="Create variations of an image",
    )
    def create(self, request):
        return super(ImageEditViewSet, self).create(request)
