"""Probes for orchestrators and load balancers.

- ``GET /healthz`` (liveness): the process answers. It checks nothing else, so a
  database or broker outage never gets healthy web processes restarted.
- ``GET /readyz`` (readiness): the database answers ``SELECT 1`` and, when
  DRAMATIQ_BROKER_URL is set, the broker answers too; otherwise ``503`` naming what failed.
  ``GET /readyz?models=a,b`` also waits for those models to be warm (loaded and run once
  on its device) on at least one live worker.

Probes arrive with the pod's or container's address as their Host header, which
ALLOWED_HOSTS rightly refuses, so :class:`HealthCheckMiddleware` answers them before
CommonMiddleware looks at the host. The same views are in the URL conf for routing and
metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.http import JsonResponse

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 2.0
_redis_clients: dict[str, object] = {}
_redis_lock = threading.Lock()


def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _redis_client(url: str):
    """One client per URL and process: its connection pool is reused probe after probe."""
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            import redis

            client = redis.Redis.from_url(
                url,
                socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
                socket_timeout=PROBE_TIMEOUT_SECONDS,
            )
            _redis_clients[url] = client
        return client


def _check_broker() -> str:
    url = settings.DRAMATIQ_BROKER_URL
    if not url:
        return "in-process"
    if url.startswith(("redis://", "rediss://")):
        _redis_client(url).ping()
        return "ok"
    import pika

    parameters = pika.URLParameters(url)
    parameters.socket_timeout = PROBE_TIMEOUT_SECONDS
    parameters.blocked_connection_timeout = PROBE_TIMEOUT_SECONDS
    parameters.connection_attempts = 1
    parameters.stack_timeout = PROBE_TIMEOUT_SECONDS * 2
    pika.BlockingConnection(parameters).close()
    return "ok"


def _run(check: Callable[[], str | None]) -> tuple[bool, str]:
    try:
        return True, check() or "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said plainly
        logger.warning("readiness check %s failed: %r", check.__name__, exc)
        return False, f"{type(exc).__name__}: {exc}"[:300]


# {model id: workers that warmed it up} for the ids asked; generations registers it
# (this app knows no models).
_warm_workers: list[Callable[[list[str]], dict[str, int]]] = []


def register_warm_workers(function: Callable[[list[str]], dict[str, int]]) -> None:
    _warm_workers.append(function)


def _check_models(model_ids: list[str]) -> tuple[bool, str]:
    """Ready when every model named is warm on at least one live worker."""
    counts = _warm_workers[0](model_ids) if _warm_workers else dict.fromkeys(model_ids, 0)
    cold = [model for model in model_ids if not counts.get(model)]
    detail = ", ".join(f"{model}: warm on {counts.get(model, 0)} worker(s)" for model in model_ids)
    return not cold, detail


def readyz(request) -> JsonResponse:
    """With `?models=a,b`: also 503 until each of those models is warm on a worker
    (a deployment waits for that before it sends traffic)."""
    results = {"database": _run(_check_database), "broker": _run(_check_broker)}
    model_ids = [m for m in request.GET.get("models", "").split(",") if m.strip()]
    if model_ids and results["database"][0]:
        results["models"] = _run_models(model_ids)
    ready = all(ok for ok, _ in results.values())
    return JsonResponse(
        {
            "status": "ok" if ready else "unavailable",
            "checks": {name: detail for name, (_, detail) in results.items()},
        },
        status=200 if ready else 503,
    )


def _run_models(model_ids: list[str]) -> tuple[bool, str]:
    try:
        return _check_models([m.strip() for m in model_ids[:50]])
    except Exception as exc:  # noqa: BLE001 - "not ready", said plainly
        logger.warning("readiness check of models failed: %r", exc)
        return False, f"{type(exc).__name__}: {exc}"[:300]


PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    """Answers GET/HEAD probes before the Host header is validated."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = PROBES.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            response = view(request)
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
