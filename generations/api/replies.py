"""How the Images API answers a create request once its generation exists, one way down:
the view (generations/api/views.py) hands the generation here; this module picks the
answer the client asked for and builds it from the presenter (generations/presenters.py),
waiting (generations/api/waiting.py) or streaming (generations/api/streaming.py).

- ``stream: true``: server-sent events as the worker publishes them;
- ``Prefer: respond-async``: 202 and the queued generation, to poll;
- otherwise (OpenAI's semantics) the images once they are made, within the sync wait
  (``Prefer: wait=N`` shortens it): on the server's event loop under ASGI, in this
  thread under WSGI. A failure is the error the client's SDK raises.
"""

from __future__ import annotations

import functools
import re

from django.conf import settings
from rest_framework import status
from rest_framework.response import Response

from generations import presenters
from generations.api import streaming, waiting
from generations.models import Generation
from generations.moderation.checks import ModerationBlocked, details_of
from imagehub import errors

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)")

# How a failed generation maps to an HTTP status when a client waited for it.
FAILURE_STATUS = {
    "model_unavailable": 503,
    "out_of_memory": 503,
    "timeout": 504,
    "canceled": 409,
    # The request's own LoRA adapter could not be used (generations/engine/adapters.py).
    "adapter_error": 422,
}


def base_url(http_request) -> str:
    """Scheme and host the client reached us at: the base of absolute image links."""
    return http_request.build_absolute_uri("/")


def prefer(http_request) -> tuple[bool, float]:
    """RFC 7240 Prefer: `respond-async` returns at once; `wait=N` bounds a sync wait."""
    header = http_request.headers.get("Prefer", "").lower()
    wait = settings.SYNC_WAIT_SECONDS
    match = _PREFER_WAIT.search(header)
    if match:
        wait = min(wait, max(1.0, float(match.group(1))))
    return "respond-async" in header, wait


def created(http_request, generation: Generation, done, *, replayed: bool = False):
    """The answer to the create request that made (or, `replayed`, found by its
    Idempotency-Key) `generation`; `done` is the completion subscription taken before
    the job existed."""
    headers = {"x-generation-id": generation.id}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    base = base_url(http_request)
    respond_async, wait_seconds = prefer(http_request)
    if generation.params.get("stream"):
        response = streaming.response(generation, asynchronous=waiting.deferrable(http_request))
    elif respond_async:
        response = Response(
            presenters.generation_payload(generation, base_url=base),
            status=status.HTTP_202_ACCEPTED,
        )
        response["Preference-Applied"] = "respond-async"
        response["Location"] = f"/v1/images/generations/{generation.id}"
    else:
        finish = functools.partial(finished, base_url=base, waited=wait_seconds, headers=headers)
        if waiting.deferrable(http_request):
            # Under ASGI the wait runs on the event loop and this thread is given back.
            return waiting.defer(http_request, generation, wait_seconds, finish)
        return finish(waiting.wait(generation, done, wait_seconds))
    for name, value in headers.items():
        response[name] = value
    return response


def finished(generation: Generation, *, base_url: str, waited: float, headers: dict) -> Response:
    """The images of a succeeded generation; else the error a waiting client gets: 504
    while it still runs, the failure's own status once it failed or was canceled."""
    if generation.status == Generation.Status.SUCCEEDED:
        headers["x-credits-charged"] = str(generation.charged)
        payload = presenters.generation_payload(generation, base_url=base_url)
        return Response(payload, headers=headers)
    if not generation.is_finished:
        raise errors.GatewayTimeout(
            waiting.still_running_message(generation, waited),
            code="generation_timeout",
            headers=headers,
            extra={"generation_id": generation.id},
        )
    moderation = details_of(generation)
    if moderation is not None:  # the output stage withheld every image: OpenAI's 400
        raise ModerationBlocked(
            moderation["moderation_stage"],
            moderation["categories"],
            headers=headers,
            extra={"generation_id": generation.id},
        )
    err = errors.APIError(
        generation.error_message or f"Generation {generation.status}.",
        code=generation.error_code or generation.status,
        headers=headers,
        extra={"generation_id": generation.id},
    )
    err.status = FAILURE_STATUS.get(generation.error_code, 500)
    raise err
