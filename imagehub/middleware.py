"""Request-wide concerns: a request id on every response, body limits, JSON errors."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from django.conf import settings

from imagehub import errors
from imagehub.asgi_app import body_limit
from imagehub.errors import is_api_path

logger = logging.getLogger(__name__)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Tags every response with x-request-id (the client's, if it sent a sane one)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("x-request-id", "")
        request_id = incoming if _CLIENT_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self._limit_body(request) or self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["x-request-id"] = request_id
        return response

    def _limit_body(self, request):
        """413 before anything reads an oversized body.

        DRF reads the request stream directly, so Django's own
        DATA_UPLOAD_MAX_MEMORY_SIZE check never fires for API requests.
        """
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return errors.render(errors.InvalidRequest("Invalid Content-Length header."))
        limit = body_limit(request.META.get("CONTENT_TYPE", ""), request.path)
        if length > limit:
            return errors.render(
                errors.PayloadTooLarge(
                    f"The request body is {length} bytes; this server accepts at most {limit}."
                )
            )
        return None

    def process_exception(self, request, exception):
        """Errors raised outside DRF views still leave in the envelope on API paths."""
        if not is_api_path(request.path):
            return None
        err = errors.as_api_error(exception)
        if err is None:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            err = errors.APIError("The server had an error while processing your request.")
        return errors.render(err)


class ContentSecurityPolicyMiddleware:
    """Content-Security-Policy on every response (settings.CONTENT_SECURITY_POLICY): the
    pages run no inline script, so an injected one would not run either."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response
