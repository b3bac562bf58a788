"""Prometheus metrics of the web process and of the workers.

The web process serves them at GET /metrics (with the embedded default its worker
threads' metrics are there too); a separate worker serves its own on
`runworker --metrics-port N`. With several gunicorn processes set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) so /metrics adds them up.
"""

from __future__ import annotations

import functools
import os
import time

from django.conf import settings
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from django.utils.crypto import constant_time_compare
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from imagehub.asgi_app import DEFERRED

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# --- web ---------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "imagehub_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "imagehub_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

# --- workers -----------------------------------------------------------------------------
QUEUE_WAIT = Histogram(
    "imagehub_job_queue_wait_seconds",
    "From enqueue to a worker starting the job",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE = Histogram(
    "imagehub_inference_seconds", "Pipeline call duration", ["model"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "imagehub_batch_images",
    "Images per pipeline call",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
IMAGES = Counter("imagehub_images_total", "Images delivered", ["model"])
MODERATION_BLOCKS = Counter(
    "imagehub_moderation_blocks_total",
    "Requests (input) and generations (output) the content policy blocked, per category",
    ["stage", "category"],
)
JOBS = Counter("imagehub_jobs_total", "Finished jobs", ["model", "status", "code"])
RECOVERED = Counter(
    "imagehub_jobs_recovered_total",
    "Jobs the recovery loop acted on: taken over from a dead worker (takeover), sent again "
    "because their message may be lost (redispatch), given up (worker_lost, queue_timeout)",
    ["kind"],
)
REDELIVERED = Counter(
    "imagehub_messages_redelivered_total",
    "Messages for a job already running or finished elsewhere (skipped, nothing done twice)",
)
DISPATCH_FAILURES = Counter(
    "imagehub_dispatch_failures_total",
    "Jobs accepted while the broker could not take their message (sent later from the outbox)",
)
LOADED_MODELS = Gauge(
    "imagehub_loaded_models", "Pipelines loaded in this process", multiprocess_mode="livesum"
)
DEVICE_MEMORY = Gauge(
    "imagehub_device_memory_bytes",
    "Device memory allocated by torch",
    ["device"],
    multiprocess_mode="livesum",
)


def route_of(request) -> str:
    """The URL pattern, not the raw path, so ids do not explode label cardinality."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return "unmatched"
    return match.route or match.view_name or "unknown"


# Any other method (clients may send made-up ones) is counted as "other": label values
# stay a fixed, small set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_of(request) -> str:
    return request.method if request.method in METHODS else "other"


def observe(method: str, route: str, status: int, started: float) -> None:
    HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        method, route = method_of(request), route_of(request)
        deferred = getattr(request, "scope", {}).get(DEFERRED)
        if deferred is not None:
            # The wait goes on on the server's loop (imagehub.asgi_app): count the answer
            # it ends with, not the placeholder.
            deferred.observe = functools.partial(_observe_deferred, method, route, started)
            return response
        observe(method, route, response.status_code, started)
        return response


def _observe_deferred(method: str, route: str, started: float, status: int) -> None:
    observe(method, route, status, started)


def sample_device_memory(device: str) -> None:
    try:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            DEVICE_MEMORY.labels(device).set(torch.cuda.memory_allocated(device))
    except Exception:  # noqa: BLE001 - metrics must never break a job
        pass


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def metrics_view(request):
    """Private by default: without IMAGEHUB_METRICS_TOKEN the API's port has no /metrics
    (404), so neither the internet nor another user of a shared host reads it; with the
    token it needs `Authorization: Bearer <token>`. A worker's --metrics-port is the
    operator's separate listener."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse(
            "metrics are off on this port; set IMAGEHUB_METRICS_TOKEN to read them\n",
            status=404,
            content_type="text/plain",
        )
    if not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return HttpResponse(
            "metrics need 'Authorization: Bearer <IMAGEHUB_METRICS_TOKEN>'\n",
            status=401,
            content_type="text/plain",
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
