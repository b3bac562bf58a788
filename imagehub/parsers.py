"""Request body parsers of the API: DRF's, with limits a hostile body cannot get past.

JSON nested deeper than :data:`MAX_DEPTH` levels is refused before it is decoded (the
decoder would otherwise recurse until Python's recursion limit, a 500); ``NaN`` and
``Infinity`` are not JSON and are refused too.
"""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import parsers, renderers
from rest_framework.exceptions import ParseError

# No request of this API nests deeper than a handful of levels.
MAX_DEPTH = 32
_OPEN, _CLOSE, _QUOTE, _ESCAPE = ord("["), ord("]"), ord('"'), ord("\\")
_OPEN_OBJECT, _CLOSE_OBJECT = ord("{"), ord("}")


def nesting_depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """How deep arrays and objects nest in a JSON text (strings skipped); stops counting
    past `limit`."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return 0  # cannot be deeper than the limit: skip the scan
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _ESCAPE:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in (_OPEN, _OPEN_OBJECT):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (_CLOSE, _CLOSE_OBJECT):
            depth -= 1
    return deepest


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(parsers.BaseParser):
    """Not a subclass of DRF's JSONParser on purpose: DRF reads such a body through
    ``request.body``, which caps it at DATA_UPLOAD_MAX_MEMORY_SIZE (1 MiB) even where
    the documented limit is larger (JSON edits: IMAGEHUB_MAX_UPLOAD_BYTES). The limits
    are imagehub.middleware's (Content-Length) and imagehub.asgi_app's (bytes read)."""

    media_type = "application/json"
    renderer_class = renderers.JSONRenderer
    strict = True

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        data = stream.read() if stream is not None else b""
        if nesting_depth(data) > MAX_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels.")
        try:
            return json.loads(data.decode(encoding), parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
