"""Inputs of edits and variations, read back by the worker from the ``images`` storage
where the web process stored them (generations/services.py)."""

from __future__ import annotations

import io

from PIL import Image

from generations.models import Generation, GenerationInput


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
