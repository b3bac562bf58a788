"""Uploaded images of edits and variations: read, check, decode, and turn masks around.

Every problem with an upload is a 400 that names its field (``image`` or ``mask``), never
a 500: the type is decided by magic bytes (PNG, JPEG, WebP only), the byte size is
bounded by IMAGEHUB_MAX_IMAGE_BYTES, the decoded size by IMAGEHUB_MAX_IMAGE_PIXELS (read
from the header before any pixel is decoded, so a small file declaring a huge canvas
costs nothing), and Pillow's own decompression-bomb guard is set to the same bound.

Masks follow OpenAI: fully transparent pixels (alpha 0) mark the area to repaint. A mask
without an alpha channel (or one with no transparent pixel at all) is read by luminance
instead: white repaints, black keeps, grey blends.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, UnidentifiedImageError
from rest_framework import serializers

from generations.catalog import ModelSpec

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+/-]*)(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.S)


@dataclass
class Upload:
    field: str
    data: bytes  # the file as sent; the worker decodes it again
    format: str  # PIL format name: PNG, JPEG or WEBP
    width: int
    height: int
    # Decoded pixels, kept only where the web process needs them (the mask): holding
    # every decoded image of a request would cost up to 64 MB each.
    image: Image.Image | None = None

    @property
    def content_type(self) -> str:
        return FORMATS[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


# Input images of one edit or variation (each is priced; see also MAX_INPUT_PIXELS).
MAX_INPUT_IMAGES = 16


def _bad(field: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: message})


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _read_bytes(field: str, value) -> bytes:
    """Bytes of a multipart file, a data URL, or {"image_url": data URL} (OpenAI JSON)."""
    limit = settings.MAX_IMAGE_BYTES
    if isinstance(value, dict):
        value = value.get("image_url") or value.get("url")
        if value is None:
            raise _bad(field, "Give the image as {'image_url': 'data:image/png;base64,...'}.")
    if hasattr(value, "read"):  # an uploaded file
        size = getattr(value, "size", None)
        if size is not None and size > limit:
            raise _bad(field, f"The file is {size} bytes; this server accepts at most {limit}.")
        data = value.read(limit + 1)
    elif isinstance(value, str):
        match = _DATA_URL.match(value.strip())
        if not match:
            raise _bad(
                field,
                "Send the image as a file (multipart/form-data) or as a base64 data URL "
                "('data:image/png;base64,...'); this server does not fetch URLs.",
            )
        if len(match.group("data")) > limit * 4 // 3 + 4:
            raise _bad(field, f"The image is larger than {limit} bytes.")
        try:
            data = base64.b64decode(match.group("data"), validate=False)
        except (binascii.Error, ValueError):
            raise _bad(field, "The data URL does not hold valid base64.") from None
    else:
        raise _bad(field, "Expected an image file or a data URL.")
    if not data:
        raise _bad(field, "The image file is empty.")
    if len(data) > limit:
        raise _bad(field, f"The image is larger than {limit} bytes.")
    return data


def read_image(
    field: str, value, *, keep_pixels: bool = False, pixels_left: int | None = None
) -> Upload:
    data = _read_bytes(field, value)
    kind = _sniff(data)
    if kind is None:
        raise _bad(field, "Unsupported image type: send a PNG, JPEG or WebP file.")
    limit = settings.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # Pillow warns above this and refuses above twice it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[kind])
            width, height = image.size
            if width * height > limit:
                raise _bad(
                    field,
                    f"The image is {width}x{height} = {width * height} pixels; this server "
                    f"accepts at most {limit}.",
                )
            if pixels_left is not None and width * height > pixels_left:
                total = settings.MAX_INPUT_PIXELS
                raise _bad(
                    field,
                    f"The input images have more than {total} pixels in all, the most this "
                    "server accepts in one request (IMAGEHUB_MAX_INPUT_PIXELS).",
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bad(field, f"The image declares more than {limit} pixels.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _bad(field, f"The image could not be decoded ({type(exc).__name__}).") from None
    upload = Upload(field=field, data=data, format=kind, width=width, height=height)
    if keep_pixels:
        upload.image = image
    else:
        image.close()
    return upload


def check_dimensions(upload: Upload, spec: ModelSpec) -> None:
    """Inputs may be larger than outputs (they are scaled down), within reason."""
    limit = 4 * spec.max_size
    if max(upload.width, upload.height) > limit:
        raise _bad(
            upload.field,
            f"The image is {upload.width}x{upload.height}; model '{spec.id}' accepts inputs "
            f"of at most {limit} pixels a side.",
        )


def mask_for(upload: Upload, size: tuple[int, int]) -> Image.Image:
    """The repaint mask as an 'L' image, white = repaint (diffusers' convention)."""
    if (upload.width, upload.height) != size:
        raise _bad(
            "mask",
            f"The mask is {upload.width}x{upload.height} but the image is "
            f"{size[0]}x{size[1]}; they must be the same size.",
        )
    image = upload.image
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if has_alpha:
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] == 0:
            return alpha.point(lambda a: 255 if a == 0 else 0)
    return image.convert("L")


def output_size_for(spec: ModelSpec, width: int, height: int) -> tuple[int, int]:
    """The input's size, scaled down into the model's limits and snapped to its multiple."""
    if spec.allowed_sizes:
        ratio = width / height

        def distance(label: str) -> float:
            w, h = (int(v) for v in label.split("x"))
            return abs(math.log((w / h) / ratio))

        best = min(spec.allowed_sizes, key=distance)
        w, h = (int(v) for v in best.split("x"))
        return w, h
    scale = min(1.0, spec.max_size / width, spec.max_size / height)
    scale = min(scale, math.sqrt(spec.max_pixels / (width * height)))
    m = spec.size_multiple
    floor = -(-spec.min_size // m) * m
    w = max(floor, int(width * scale) // m * m)
    h = max(floor, int(height * scale) // m * m)
    return w, h


def parse_inputs(data, spec: ModelSpec, *, with_mask: bool) -> tuple[list[Upload], Upload | None]:
    """The images (multipart `image` / `image[]`, JSON `image` / `images`) and the mask."""
    values = []
    getlist = getattr(data, "getlist", None)
    for name in ("image", "image[]", "images", "images[]"):
        if getlist is not None:
            values.extend(getlist(name))
        elif name in data:
            value = data[name]
            values.extend(value if isinstance(value, list) else [value])
    values = [v for v in values if v not in (None, "")]
    if not values:
        raise _bad("image", "Send an image to edit as 'image' (a PNG, JPEG or WebP file).")
    if len(values) > MAX_INPUT_IMAGES:
        raise _bad("image", f"At most {MAX_INPUT_IMAGES} images per request; got {len(values)}.")
    # Every input is decoded: their pixels together are bounded (checked before decoding
    # each), and priced (generations/pricing.py).
    images = []
    pixels_left = settings.MAX_INPUT_PIXELS
    for value in values:
        upload = read_image("image", value, pixels_left=pixels_left)
        pixels_left -= upload.width * upload.height
        images.append(upload)
    for upload in images:
        check_dimensions(upload, spec)
    mask = None
    raw_mask = data.get("mask") if with_mask else None
    if raw_mask not in (None, ""):
        mask = read_image("mask", raw_mask, keep_pixels=True)
    return images, mask
