"""Image files from PIL images: the output formats of the Images API (`output_format`,
`output_compression`). The worker encodes its images with them; the web process names
stored previews by their extensions without importing the engine."""

from __future__ import annotations

import io
import zlib

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


# PNG writer options by the model's `png_compression` (generations/catalog/spec.py).
PNG_OPTIONS = {
    "fast": {"compress_level": 1, "compress_type": zlib.Z_RLE},
    "small": {},
}


def encode_image(
    image, output_format: str, compression: int | None, png_compression: str = "fast"
) -> tuple[bytes, str]:
    """Encode a PIL image; `compression` (0-100) is the quality for jpeg and webp (OpenAI's
    `output_compression`), `png_compression` the model's PNG trade-off. The encoders
    release the GIL while they work, so a worker encodes while its device runs."""
    buffer = io.BytesIO()
    if output_format == "jpeg":
        image.convert("RGB").save(
            buffer, format="JPEG", quality=compression if compression is not None else 95
        )
        return buffer.getvalue(), "image/jpeg"
    if output_format == "webp":
        image.save(buffer, format="WEBP", quality=compression if compression is not None else 90)
        return buffer.getvalue(), "image/webp"
    image.save(buffer, format="PNG", **PNG_OPTIONS[png_compression])
    return buffer.getvalue(), "image/png"
