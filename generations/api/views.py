"""The Images API (generations, edits, variations) and the model list. Thin: validate,
build one `GenerationRequest` (the order), call one service, and hand the generation to
generations/api/replies.py, which answers the way the client asked."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from accounts import ratelimit
from accounts.api.authentication import HasAPIKey, HasGenerateScope
from accounts.idempotency import from_request as idempotency_from
from generations import notify, presenters, selectors
from generations.api import listing, replies
from generations.api.edit_serializers import EditRequestSerializer, VariationRequestSerializer
from generations.api.listing import GenerationListQuerySerializer
from generations.api.model_objects import (
    ModelListSerializer,
    ModelObjectSerializer,
    ModelsSchema,
)
from generations.api.serializers import GenerationRequestSerializer
from generations.availability import unavailable_reasons
from generations.catalog import all_models, get_model
from generations.models import Generation, new_generation_id
from generations.services import generation_cancel, generation_create
from generations.signed_urls import verify
from generations.types import GenerationRequest
from imagehub import errors
from imagehub.parsers import JSONParser
from imagehub.storage import images

PREFER = OpenApiParameter(
    "Prefer",
    str,
    OpenApiParameter.HEADER,
    description="`respond-async` for 202 + polling; `wait=N` seconds",
)
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Retry safely: the same key with the same request within 24 h returns the "
    "same generation and charges once; with a different request it is a 422.",
)


class ImageGenerationViewSet(viewsets.ViewSet):
    permission_classes = [HasAPIKey, HasGenerateScope]
    # Edits and variations change the serializer (and the parsers).
    request_serializer = GenerationRequestSerializer

    def finalize_response(self, request, response, *args, **kwargs):
        # OpenAI's rate-limit headers on every response of the image API.
        window = getattr(request, "rate_window", None)
        if window is not None:
            for name, value in window.headers().items():
                response.setdefault(name, value)
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        request=GenerationRequestSerializer,
        responses={200: dict, 202: dict},
        parameters=[PREFER, IDEMPOTENCY_KEY],
        summary="Create images from a prompt",
    )
    def create(self, request):
        request.rate_window = ratelimit.hit(request.auth)
        serializer = self.request_serializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        order = GenerationRequest(**serializer.validated_data)
        key = request.auth
        idempotency = idempotency_from(request)
        generation_id = new_generation_id()
        # Subscribe before the job exists, so its completion notice cannot be missed.
        with notify.subscription(generation_id) as done:
            generation = generation_create(
                order=order,
                organization=key.organization,
                api_key=key,
                user=key.created_by,
                generation_id=generation_id,
                idempotency=idempotency,
            )
            if generation.id == generation_id:
                return replies.created(request, generation, done)
        # The same Idempotency-Key made this generation before: answer with it (waiting
        # for it if it is still on its way), charge nothing.
        with notify.subscription(generation.id) as done:
            return replies.created(request, generation, done, replayed=True)

    def _own(self, request, pk) -> Generation:
        generation = selectors.generation_get_owned(
            organization=request.auth.organization, generation_id=pk
        )
        if generation is None:
            # Another tenant's id looks exactly like one that does not exist.
            raise errors.NotFound(
                f"No generation with id '{pk}'.", param="id", code="generation_not_found"
            )
        return generation

    @extend_schema(
        parameters=[GenerationListQuerySerializer],
        responses={200: dict},
        summary="List your generations, newest first",
        operation_id="list_generations",
        description="Filters by status, creation time and key; `next_cursor` goes in `after` "
        "for the next page. Items carry no image data: get one generation for its images.",
    )
    def list(self, request):
        query = GenerationListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        items, has_more = listing.page(
            Generation.objects.filter(organization=request.auth.organization),
            query.validated_data,
        )
        queue = presenters.QueueLook()  # the page's queued jobs share one look at the queue
        return Response(
            {
                "object": "list",
                "data": [
                    presenters.generation_payload(item, images=False, queue=queue) for item in items
                ],
                "has_more": has_more,
                "next_cursor": listing.cursor_of(items[-1]) if has_more else None,
            }
        )

    @extend_schema(
        responses={200: dict},
        summary="Get a generation's status and result",
        operation_id="retrieve_generation",
    )
    def retrieve(self, request, pk=None):
        generation = self._own(request, pk)
        if generation.purged_at is not None:
            raise images_gone(generation.id)
        return Response(
            presenters.generation_payload(generation, base_url=replies.base_url(request)),
            headers={"x-generation-id": generation.id},
        )

    @extend_schema(request=None, responses={200: dict}, summary="Cancel a generation")
    def cancel(self, request, pk=None):
        """A queued generation is canceled at once and its hold released; a running one
        stops at its next step (poll until `status` is `canceled`)."""
        generation = generation_cancel(generation=self._own(request, pk))
        payload = presenters.generation_payload(generation, base_url=replies.base_url(request))
        payload["cancel_requested"] = generation.cancel_requested_at is not None or (
            generation.status == Generation.Status.CANCELED
        )
        return Response(payload, headers={"x-generation-id": generation.id})


class ImageEditViewSet(ImageGenerationViewSet):
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    request_serializer = EditRequestSerializer

    @extend_schema(
        request={"multipart/form-data": EditRequestSerializer, "application/json": dict},
        responses={200: dict, 202: dict},
        parameters=[PREFER, IDEMPOTENCY_KEY],
        summary="Edit an image (image-to-image, or inpainting with a mask)",
    )
    def create(self, request):
        return super().create(request)


class ImageVariationViewSet(ImageGenerationViewSet):
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    request_serializer = VariationRequestSerializer

    @extend_schema(
        request={"multipart/form-data": VariationRequestSerializer},
        responses={200: dict, 202: dict},
        parameters=[PREFER, IDEMPOTENCY_KEY],
        summary="Create variations of an image",
    )
    def create(self, request):
        return super().create(request)


class ModelViewSet(viewsets.ViewSet):
    schema = ModelsSchema()

    @extend_schema(
        responses={200: ModelListSerializer}, summary="List models", operation_id="list_models"
    )
    def list(self, request):
        unavailable = unavailable_reasons()
        return Response({"object": "list", "data": [_model(m, unavailable) for m in all_models()]})

    @extend_schema(
        responses={200: ModelObjectSerializer},
        summary="Retrieve a model",
        operation_id="retrieve_model",
    )
    def retrieve(self, request, pk=None):
        spec = get_model(pk)
        if spec is None:
            raise errors.NotFound(
                f"The model '{pk}' does not exist.", param="model", code="model_not_found"
            )
        return Response(_model(spec, unavailable_reasons()))


def _model(spec, unavailable: dict[str, str]) -> dict:
    """A model object, with whether the workers can load it here (imagehub's fields)."""
    reason = unavailable.get(spec.id)
    return {**spec.as_openai(), "available": reason is None, "unavailable_reason": reason}


@extend_schema(exclude=True)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def serve_file(request, name: str):
    """Serve a stored image to whoever holds an unexpired signed link."""
    if not verify(name, request.GET.get("expires"), request.GET.get("signature")):
        raise errors.PermissionError_(
            "This link is invalid or has expired.", code="invalid_signature"
        )
    storage = images
    if not storage.exists(name):
        purged = selectors.purged_generation_of_file(name)
        if purged is not None:
            raise images_gone(purged)
        raise errors.NotFound("No such file.")
    response = FileResponse(storage.open(name, "rb"))
    if getattr(request, "scope", None) is not None:
        # Under ASGI the server iterates asynchronously: hand it an async iterator, or
        # Django warns on every download and reads the whole file in one thread call.
        response.streaming_content = _read_async(response.file_to_stream)
    response["Cache-Control"] = "private, max-age=3600"
    return response


def images_gone(generation_id: str) -> errors.Gone:
    days = settings.IMAGE_RETENTION_DAYS
    return errors.Gone(
        f"The images of generation '{generation_id}' were deleted {days} days after it was "
        f"created (this server keeps images for {days} days); its record, price and usage "
        "remain.",
        param="id",
    )


async def _read_async(filelike, chunk_size: int = 256 * 1024):
    # Storage reads block (local disk, S3): each chunk is read in a worker thread.
    while chunk := await sync_to_async(filelike.read, thread_sensitive=False)(chunk_size):
        yield chunk
