"""Inputs of edits and variations: stored next to the generation for the worker to read.

The web process checks and decodes uploads (generations/uploads.py); the worker, a
separate process, reads them back from the same ``images`` storage.
"""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from generations.models import Generation, GenerationInput
from generations.services import generation_create
from generations.uploads import Upload


def _store(generation: Generation, *, role: str, index: int, data: bytes, extension: str,
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


def generation_create_with_inputs(
    *, images: list[Upload], mask: Image.Image | None, **fields
) -> Generation:
    """generation_create, with the uploaded images (and mask) stored in the same
    transaction, so the job is enqueued only once its inputs are there."""
    with transaction.atomic():
        generation = generation_create(**fields)
        for index, upload in enumerate(images):
            _store(
                generation,
                role=GenerationInput.Role.IMAGE,
                index=index,
                data=upload.data,
                extension=upload.extension,
                content_type=upload.content_type,
                width=upload.width,
                height=upload.height,
            )
        if mask is not None:
            buffer = io.BytesIO()
            mask.save(buffer, format="PNG")
            _store(
                generation,
                role=GenerationInput.Role.MASK,
                index=0,
                data=buffer.getvalue(),
                extension="png",
                content_type="image/png",
                width=mask.width,
                height=mask.height,
            )
    return generation


def load_inputs(generation: Generation) -> tuple[Image.Image | None, Image.Image | None]:
    """(the init image as RGB, the repaint mask as L: white = repaint) for the worker."""
    image = mask = None
    for row in generation.inputs.all():
        with row.file.open("rb") as handle:
            decoded = Image.open(io.BytesIO(handle.read()))
            decoded.load()
        if row.role == GenerationInput.Role.IMAGE and row.index == 0:
            image = decoded.convert("RGB")
        elif row.role == GenerationInput.Role.MASK:
            mask = decoded.convert("L")
    return image, mask
