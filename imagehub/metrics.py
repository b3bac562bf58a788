"""Prometheus metrics of the web process and of the workers.

The web process serves them at GET /metrics (with the embedded default its worker
threads' metrics are there too); a separate worker serves its own on
`runworker --metrics-port N`. With several gunicorn processes set PROMETHEUS_MULTIPROC_DIR
(prometheus_client's multiprocess mode) so /metrics adds them up.
"""

from __future__ import annotations

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


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        route = route_of(request)
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


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
    token = settings.METRICS_TOKEN
    if token and not constant_time_compare(
        request.headers.get("Authorization", ""), f"Bearer {token}"
    ):
        return HttpResponse(
            "metrics need 'Authorization: Bearer <IMAGEHUB_METRICS_TOKEN>'\n",
            status=401,
            content_type="text/plain",
        )
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
