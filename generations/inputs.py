"""Inputs of edits and variations: the uploaded images (and the mask), stored next to
their generation by the web process in the transaction that creates it
(`generation_create` in generations/services.py), and read back by the worker that runs
the job (generations/worker/jobs.py)."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from PIL import Image

from generations.models import Generation, GenerationInput
from generations.types import GenerationRequest


def store_inputs(generation: Generation, order: GenerationRequest) -> None:
    """Web side: the order's images and mask, next to the record."""
    for index, upload in enumerate(order.images):
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
    if order.mask is not None:
        buffer = io.BytesIO()
        order.mask.save(buffer, format="PNG")
        _store_input(
            generation,
            role=GenerationInput.Role.MASK,
            index=0,
            data=buffer.getvalue(),
            extension="png",
            content_type="image/png",
            width=order.mask.width,
            height=order.mask.height,
        )


def _store_input(generation: Generation, *, role: str, index: int, data: bytes, extension: str,
                 content_type: str, width: int, height: int) -> GenerationInput:  # fmt: skip
    row = GenerationInput(
        generation=generation,
        role=role,
        index=index,
        width=width,
        height=height,
        content_type=content_type,
        bytes=len(data),
    )
    name = generation.file_name(f"inputs/{generation.id}-{role}{index}", extension)
    row.file.save(name, ContentFile(data), save=False)
    row.save()
    return row


def load_inputs(generation: Generation) -> tuple[Image.Image | None, Image.Image | None]:
    """Worker side: (the init image as RGB, the repaint mask as L: white = repaint)."""
    image = mask = None
    for row in generation.inputs.all():
        decoded = _decode(row)
        if row.role == GenerationInput.Role.IMAGE and row.index == 0:
            image = decoded.convert("RGB")
        elif row.role == GenerationInput.Role.MASK:
            mask = decoded.convert("L")
    return image, mask


def load_references(generation: Generation) -> list[Image.Image]:
    """Worker side: every input image of an instruction edit, in the order sent."""
    rows = generation.inputs.filter(role=GenerationInput.Role.IMAGE).order_by("index")
    images = [_decode(row).convert("RGB") for row in rows]
    if not images:
        raise FileNotFoundError(f"The input images of {generation.id} are not in storage.")
    return images


def _decode(row: GenerationInput) -> Image.Image:
    with row.file.open("rb") as handle:
        decoded = Image.open(io.BytesIO(handle.read()))
        decoded.load()
    return decoded
