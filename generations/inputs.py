"""Inputs of edits and variations, stored next to their generation by the web process
in the transaction that creates it (generations/services.py); the worker reads them
back (generations/worker/inputs.py)."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile

from generations.models import Generation, GenerationInput
from generations.types import GenerationRequest


def store_inputs(generation: Generation, request: GenerationRequest) -> None:
    """The uploaded images (and the mask) of an edit or variation, next to the record, for
    the worker to read back (generations/worker/inputs.py)."""
    for index, upload in enumerate(request.images):
        _store_input(
            generation,
            role=GenerationInput.Role.IMAGE,
            index=index,
            data=upload.data,
            extension=upload.extension,
            content_type=upload.content_type,
            width=upload.width,
            height=upload.height,
        )
    if request.mask is not None:
        buffer = io.BytesIO()
        request.mask.save(buffer, format="PNG")
        _store_input(
            generation,
            role=GenerationInput.Role.MASK,
            index=0,
            data=buffer.getvalue(),
            extension="png",
            content_type="image/png",
            width=request.mask.width,
            height=request.mask.height,
        )


def _store_input(generation: Generation, *, role: str, index: int, data: bytes, extension: str,
                 content_type: str, width: int, height: int) -> GenerationInput:  # fmt: skip
    day = generation.created_at.strftime("%Y/%m/%d")
    name = f"{generation.organization_id}/{day}/inputs/{generation.id}-{role}{index}.{extension}"
    row = GenerationInput(
        generation=generation,
        role=role,
        index=index,
        width=width,
        height=height,
        content_type=content_type,
        bytes=len(data),
    )
    row.file.save(name, ContentFile(data), save=False)
    row.save()
    return row
