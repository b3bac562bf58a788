"""One error hierarchy, rendered everywhere in OpenAI's envelope.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

The official SDKs map the HTTP status to their exception classes (400 BadRequestError,
401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, ...), so the status
matters as much as the body.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from django.core.exceptions import (
    DisallowedHost,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from rest_framework import exceptions as drf
from rest_framework.response import Response

from imagehub.db import is_connection_error

logger = logging.getLogger(__name__)


class APIError(Exception):
    status = 500
    type = "server_error"
    code: str | None = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code, **self.extra)


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class AuthenticationFailed(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionError_(APIError):
    status = 403
    type = "invalid_request_error"
    code = "permission_denied"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Gone(APIError):
    status = 410
    type = "invalid_request_error"
    code = "image_gone"


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(APIError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class RateLimited(APIError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class ServiceUnavailable(APIError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class GatewayTimeout(APIError):
    status = 504
    type = "server_error"
    code = "timeout"


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def _first_validation_error(detail: Any, path: str = "") -> tuple[str | None, str]:
    """Walk DRF's nested error detail to the first (param, message) pair."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = (
                path
                if key in ("non_field_errors", "__all__")
                else (f"{path}.{key}" if path else str(key))
            )
            return _first_validation_error(value, name)
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, (dict, list)):
            return _first_validation_error(first, path)
        return (path or None), str(first)
    return (path or None), str(detail)


def _from_drf(exc: drf.APIException) -> APIError:
    if isinstance(exc, drf.ValidationError):
        param, message = _first_validation_error(exc.detail)
        if param and not re.search(rf"\b{re.escape(param.split('.')[-1])}\b", message):
            message = f"Invalid '{param}': {message}"
        return InvalidRequest(message, param=param)
    if isinstance(exc, drf.ParseError):
        return InvalidRequest(
            f"We could not parse the JSON body of your request: {exc.detail}",
            code="invalid_json",
        )
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return AuthenticationFailed(
            str(exc.detail)
            if isinstance(exc, drf.AuthenticationFailed)
            else "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key"
            if isinstance(exc, drf.AuthenticationFailed)
            else "missing_api_key",
        )
    if isinstance(exc, drf.PermissionDenied):
        return PermissionError_(str(exc.detail))
    if isinstance(exc, drf.NotFound):
        return NotFound(str(exc.detail))
    if isinstance(exc, drf.MethodNotAllowed):
        err = APIError(str(exc.detail), code="method_not_allowed")
        err.status, err.type = 405, "invalid_request_error"
        return err
    if isinstance(exc, drf.UnsupportedMediaType):
        return UnsupportedMediaType(
            f"{exc.detail} Send 'Content-Type: application/json'.", param=None
        )
    if isinstance(exc, drf.NotAcceptable):
        err = APIError(str(exc.detail), code="not_acceptable")
        err.status, err.type = 406, "invalid_request_error"
        return err
    if isinstance(exc, drf.Throttled):
        return RateLimited(str(exc.detail), headers={"Retry-After": str(exc.wait or 1)})
    err = APIError(str(exc.detail), code=exc.default_code)
    err.status = exc.status_code
    err.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return err


def bad_host() -> InvalidRequest:
    return InvalidRequest(
        "The Host header names a host this server does not answer to.",
        param="Host",
        code="invalid_host",
    )


class OneLine(logging.Filter):
    """Drops the traceback of a record: for loggers whose events are a client's doing
    (a bad Host header), where one line says it all and a traceback each time would let
    anyone flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database is unavailable at the moment; retry in a few seconds.",
        code="database_unavailable",
        headers={"Retry-After": "2"},
    )


def as_api_error(exc: BaseException) -> APIError | None:
    if isinstance(exc, APIError):
        return exc
    if is_connection_error(exc):
        # One line, no traceback: a database failover is an event, not a bug.
        logger.warning("database unavailable: %s", str(exc).strip().splitlines()[:1])
        return database_unavailable()
    if isinstance(exc, drf.APIException):
        return _from_drf(exc)
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(
            "The request body is larger than this server accepts.", code="request_too_large"
        )
    if isinstance(exc, DisallowedHost):
        return bad_host()
    if isinstance(exc, TooManyFieldsSent):
        return InvalidRequest(
            "The request has more form fields than this server accepts.",
            code="too_many_fields",
        )
    if isinstance(exc, TooManyFilesSent):
        return InvalidRequest(
            "The request has more files than this server accepts.", code="too_many_files"
        )
    if isinstance(exc, MultiPartParserError | UnreadablePostError):
        return InvalidRequest(f"We could not read the request body: {exc}", code="invalid_body")
    if isinstance(exc, SuspiciousOperation):
        return InvalidRequest("Bad request.", code="bad_request")
    if isinstance(exc, Http404):
        return NotFound(str(exc) or "Not found.")
    if isinstance(exc, PermissionDenied):
        return PermissionError_(str(exc) or "Permission denied.")
    return None


def render(err: APIError) -> JsonResponse:
    response = JsonResponse(err.body(), status=err.status)
    for name, value in err.headers.items():
        response[name] = value
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF EXCEPTION_HANDLER: every error leaves in OpenAI's envelope, after a rollback."""
    err = as_api_error(exc)
    if err is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__)
        err = APIError("The server had an error while processing your request.")
    from rest_framework.views import set_rollback  # late: rest_framework.views imports us

    set_rollback()  # rolls back only where ATOMIC_REQUESTS wrapped the view
    response = Response(err.body(), status=err.status)
    for name, value in err.headers.items():
        response[name] = value
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed) or err.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


API_PREFIXES = ("/v1/", "/api/")


def is_api_path(path: str) -> bool:
    """The API answers in OpenAI's error envelope; every other path is a web page."""
    return path.startswith(API_PREFIXES)


def _page(request, status: int, title: str, message: str):
    """Web pages (not the API) get an HTML error page."""
    from django.shortcuts import render as render_template

    if is_api_path(request.path):
        return None
    context = {"title": title, "message": message}
    return render_template(request, "error.html", context, status=status)


# Django-level handlers, for errors that never reach a DRF view.
def handler404(request, exception=None):
    page = _page(request, 404, "Not found", "There is nothing here, or it is not yours.")
    if page is not None:
        return page
    return render(
        NotFound(f"Unknown request URL: {request.method} {request.path}.", code="unknown_url")
    )


def handler500(request):
    exc = sys.exc_info()[1]
    if exc is not None and is_connection_error(exc):
        return render(database_unavailable())
    return render(APIError("The server had an error while processing your request."))


def handler400(request, exception=None):
    err = as_api_error(exception) if exception is not None else None
    return render(err or InvalidRequest("Bad request.", code="bad_request"))


def handler403(request, exception=None):
    page = _page(request, 403, "Permission denied", "You may not do this.")
    if page is not None:
        return page
    return render(PermissionError_("Permission denied."))
