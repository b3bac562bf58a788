"""Image files from PIL images: the output formats of the Images API (`output_format`,
`output_compression`). The worker encodes its images with them; the web process names
stored previews by their extensions without importing the engine."""

from __future__ import annotations

import io
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


# PNG writer options of PIL, for png_compression "small" (PIL's default: adaptive
# filters, zlib level 6); "fast" has a writer of its own (encode_png_fast).
PNG_OPTIONS = {"small": {}}


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
    if png_compression == "fast":
        data = encode_png_fast(image)
        if data is not None:
            return data, "image/png"
    image.save(buffer, format="PNG", **PNG_OPTIONS["small"])
    return buffer.getvalue(), "image/png"


# --- PNG, fast --------------------------------------------------------------------------
# PIL's PNG writer chooses a filter per row in C code that holds the GIL: a 1024² RGB
# image takes it about 80 ms at zlib level 1 on one core, while the device waits for a
# worker thread or the client for its answer. This writer filters every row with Sub
# (one numpy subtraction: a diffusion model's output is smooth from pixel to pixel) and
# deflates bands of rows on several cores at once (zlib releases the GIL): each band is an
# independent deflate stream ended by a sync flush, so their concatenation is one valid
# stream (as pigz does). Same pixels as PIL's file, about the same size, a fraction of the
# time. Not a library: pypng is pure Python (slower than PIL), and OpenCV's encoder is a
# 50 MB dependency for this one function and also runs on one core.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}  # 8 bits per sample
_BAND_BYTES = 512 * 1024  # the least data a band gets, so that a band pays its way
_BAND_THREADS = min(8, os.cpu_count() or 1)
# Threads start on first use (the web process imports this module and never encodes).
_BANDS = ThreadPoolExecutor(max_workers=_BAND_THREADS, thread_name_prefix="imagehub-png")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
    )


def _deflate_band(band, last: bool) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return compressor.compress(band) + compressor.flush(
        zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
    )


def encode_png_fast(image, *, bands: int | None = None) -> bytes | None:
    """The image as a PNG file (8 bits per sample, Sub filter, zlib level 1 run-length,
    rows deflated in parallel bands), or None for a mode it does not write (PIL does)."""
    import numpy as np

    if image.mode not in _PNG_COLOR_TYPES:
        return None
    color_type, channels = _PNG_COLOR_TYPES[image.mode]
    width, height = image.size
    rows = np.asarray(image, dtype=np.uint8).reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type Sub: each byte minus the one a pixel to its left
    filtered[:, 1 : 1 + channels] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=filtered[:, 1 + channels :])
    if bands is None:
        bands = max(1, min(_BAND_THREADS, filtered.nbytes // _BAND_BYTES))
    bands = max(1, min(bands, height))
    edges = [height * i // bands for i in range(bands + 1)]
    parts = [(filtered[edges[i] : edges[i + 1]], i == bands - 1) for i in range(bands)]
    if bands == 1:
        deflated = [_deflate_band(*parts[0])]
    else:
        deflated = list(_BANDS.map(lambda part: _deflate_band(*part), parts))
    # zlib stream: header (deflate, 32 KiB window, fastest), the bands, Adler-32 of it all.
    idat = b"\x78\x01" + b"".join(deflated) + struct.pack(">I", zlib.adler32(filtered))
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", idat),
            _png_chunk(b"IEND", b""),
        )
    )
