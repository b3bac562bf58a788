"""The served OpenAPI schema tells the whole truth about errors and media types
(drf-spectacular postprocessing hook, settings.SPECTACULAR_SETTINGS).

Every operation documents each error status the server can answer with, in OpenAI's
envelope (the `Error` component): those of the request layer (bad body, size, headers,
host, method, media type, slow body), of authentication and rate limits, of the
database, and those of its own kind of operation. Responses that are not JSON are
documented with their media types: CSV usage exports, SSE streams of image requests.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "description": "OpenAI's error envelope.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
                "generation_id": {"type": "string"},
            },
            "additionalProperties": True,
        }
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

DESCRIPTIONS = {
    "400": "Invalid request: a field (named in `param`), the JSON, the form, the Host header",
    "401": "Missing, unknown, revoked, expired or rotated-out API key",
    "403": "The key's scope or the caller's role does not allow this",
    "404": "No such object, or not yours",
    "405": "Method not allowed",
    "406": "Not acceptable",
    "408": "The request body stopped arriving",
    "409": "The generation was canceled",
    "413": "The body is over the size limit",
    "415": "Unsupported media type",
    "422": "The Idempotency-Key was used for a different request",
    "429": "Rate limit, concurrency limit, credits or spend cap (with Retry-After)",
    "431": "The request headers are too large",
    "500": "The engine failed on the job, or its worker kept dying",
    "503": "The model cannot be loaded, the database is unavailable, or no worker took the job",
    "504": "The sync wait ran out (the generation goes on; poll it)",
}
# Any operation, whatever it does.
COMMON = ("400", "401", "403", "404", "405", "406", "408", "413", "415", "429", "431", "503")
# Image requests that create work: their failures and waits.
CREATES = ("409", "422", "500", "504")
IMAGE_CREATE_PATHS = (
    "/v1/images/generations",
    "/v1/images/generation",
    "/api/images/generations",
    "/v1/images/edits",
    "/v1/images/variations",
)
SSE_EVENTS = [
    "image_generation.partial_image",
    "image_generation.completed",
    "image_edit.partial_image",
    "image_edit.completed",
    "error",
]
SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "description": "With `stream: true`: server-sent events, one per partial image, "
            "one per finished image, or an `error` (its `data` is the error envelope).",
            "required": ["data"],
            "properties": {
                "event": {"type": "string", "enum": SSE_EVENTS},
                "data": {"type": "string", "description": "The event's JSON object."},
            },
        }
    }
}
CSV = {"text/csv": {"schema": {"type": "string", "description": "With `format=csv`."}}}


def _error_response(status: str) -> dict:
    return {
        "description": DESCRIPTIONS.get(status, "Error"),
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def add_errors_and_media_types(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            statuses = list(COMMON)
            creates = method == "post" and path in IMAGE_CREATE_PATHS
            if creates or path.endswith("/cancel"):
                statuses += CREATES
            for status in statuses:
                response = responses.setdefault(status, _error_response(status))
                if not response.get("content"):
                    response["content"] = _error_response(status)["content"]
            if creates:
                for status in ("200",):
                    if status in responses:
                        responses[status].setdefault("content", {}).update(SSE)
            if path == "/v1/usage" and method == "get" and "200" in responses:
                responses["200"].setdefault("content", {}).update(CSV)
    return result
