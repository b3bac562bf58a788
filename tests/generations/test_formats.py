"""The worker's image files: the fast PNG writer gives the same pixels as PIL's, in a file
any PNG reader takes, for every band split; other formats and modes go through PIL."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from generations.formats import encode_image, encode_png_fast


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each one's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    found, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(body, zlib.crc32(kind)), kind
        found.append((kind, body))
        at += 12 + length
    return found


@pytest.mark.parametrize(
    ("mode", "shape"),
    [
        ("RGB", (37, 53, 3)),
        ("RGBA", (20, 9, 4)),
        ("L", (1, 1)),
        ("L", (301, 600)),
        ("RGB", (1, 700, 3)),
    ],
)
@pytest.mark.parametrize("bands", [1, 2, 3, 8, 1000])
def test_fast_png_keeps_every_pixel(mode, shape, bands):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    image = Image.fromarray(pixels, mode)
    data = encode_png_fast(image, bands=bands)
    back = _decoded(data)
    assert back.mode == mode and back.size == image.size
    assert np.array_equal(np.asarray(back), pixels)
    kinds = [kind for kind, _ in _chunks(data)]
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    # The bands make one zlib stream, its Adler-32 checked by zlib itself.
    idat = dict(_chunks(data))[b"IDAT"]
    rows = zlib.decompress(idat)
    assert len(rows) == shape[0] * (shape[1] * (shape[2] if len(shape) == 3 else 1) + 1)


def test_fast_png_is_the_default_and_as_small_as_pils_level_1():
    # Like a diffusion model's output: smooth shapes under a fine grain. (Flat synthetic
    # pictures compress better with PIL's adaptive filters: png_compression "small".)
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(low).resize((256, 256), Image.BICUBIC), dtype=np.int16)
    pixels = np.clip(smooth + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    data, content_type = encode_image(image, "png", None)
    assert content_type == "image/png"
    assert data == encode_png_fast(image)
    assert np.array_equal(np.asarray(_decoded(data)), pixels)
    pil = io.BytesIO()
    image.save(pil, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    assert len(data) <= len(pil.getvalue()) * 1.05


def test_modes_it_does_not_write_and_small_compression_go_through_pil():
    palette = Image.new("P", (16, 8), 3)
    data, _ = encode_image(palette, "png", None)
    assert _decoded(data).mode == "P"
    assert encode_png_fast(palette) is None
    rgb = Image.new("RGB", (16, 8), (200, 10, 10))
    small, _ = encode_image(rgb, "png", None, "small")
    assert np.array_equal(np.asarray(_decoded(small)), np.asarray(rgb))
    assert small != encode_png_fast(rgb)


def test_jpeg_and_webp_still_follow_output_compression():
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    low, content_type = encode_image(rgb, "jpeg", 10)
    high, _ = encode_image(rgb, "jpeg", 95)
    assert content_type == "image/jpeg" and len(low) < len(high)
    webp, content_type = encode_image(rgb, "webp", 50)
    assert content_type == "image/webp" and _decoded(webp).format == "WEBP"
