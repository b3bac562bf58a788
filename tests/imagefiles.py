"""Image files for upload tests."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image


def png_bytes(size=(256, 256), color=(200, 40, 40), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient_png(size=(256, 256)) -> bytes:
    """A picture whose pixels differ, so 'unchanged' means something."""
    w, h = size
    image = Image.new("RGB", size)
    image.putdata(
        [((x * 255) // w, (y * 255) // h, ((x + y) * 7) % 256) for y in range(h) for x in range(w)]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def alpha_mask(size=(256, 256), hole=(0, 0, 128, 128)) -> bytes:
    """OpenAI-style mask: opaque everywhere except a transparent box (the area to repaint)."""
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), hole)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(data: bytes, name: str = "image.png", content_type: str = "image/png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


def data_url(data: bytes, content_type: str = "image/png") -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG file whose header declares a huge canvas."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
