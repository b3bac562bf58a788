"""Liveness and readiness probes, as an orchestrator calls them."""

from __future__ import annotations

import socket

import pytest
from django.db import connections
from django.db.utils import OperationalError
from django.test import Client

from imagehub import health

# Kubernetes probes the pod's IP; Docker's healthcheck 127.0.0.1 inside the container.
PROBE_HOST = "10.42.0.7:8000"


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_liveness_answers_without_touching_the_database():
    # No django_db mark: pytest-django makes any database access here an error.
    response = Client().get("/healthz", HTTP_HOST=PROBE_HOST)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert response["x-request-id"]


@pytest.mark.django_db
def test_readiness_checks_the_database_and_reports_the_in_process_broker(settings):
    settings.DRAMATIQ_BROKER_URL = ""
    response = Client().get("/readyz", HTTP_HOST=PROBE_HOST)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "in-process"},
    }


def test_an_unknown_host_is_still_refused_elsewhere():
    # The probes bypass ALLOWED_HOSTS; nothing else does.
    assert Client().get("/v1/models", HTTP_HOST=PROBE_HOST).status_code == 400


@pytest.mark.django_db
def test_readiness_fails_with_503_when_the_database_is_down(monkeypatch, settings):
    settings.DRAMATIQ_BROKER_URL = ""

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["default"], "cursor", refuse)
    response = Client().get("/readyz", HTTP_HOST=PROBE_HOST)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "OperationalError: connection refused"
    assert body["checks"]["broker"] == "in-process"


@pytest.mark.django_db
def test_readiness_fails_when_a_redis_broker_does_not_answer(settings):
    settings.DRAMATIQ_BROKER_URL = f"redis://127.0.0.1:{_unused_port()}/0"
    response = Client().get("/readyz", HTTP_HOST=PROBE_HOST)
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("ConnectionError")


@pytest.mark.django_db
def test_readiness_fails_when_a_rabbitmq_broker_does_not_answer(settings):
    settings.DRAMATIQ_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{_unused_port()}/"
    response = Client().get("/readyz", HTTP_HOST=PROBE_HOST)
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] != "ok"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.django_db
@pytest.mark.skipif(not _reachable(6379), reason="Redis is not running on 127.0.0.1:6379")
def test_readiness_with_a_live_redis_broker(settings):
    settings.DRAMATIQ_BROKER_URL = "redis://127.0.0.1:6379/0"
    response = Client().get("/readyz", HTTP_HOST=PROBE_HOST)
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
@pytest.mark.skipif(not _reachable(5672), reason="RabbitMQ is not running on 127.0.0.1:5672")
def test_readiness_with_a_live_rabbitmq_broker(settings):
    settings.DRAMATIQ_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
    response = Client().get("/readyz", HTTP_HOST=PROBE_HOST)
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_probes_are_routed_for_metrics_labels():
    from django.urls import resolve

    assert resolve("/healthz").func is health.healthz
    assert resolve("/readyz").func is health.readyz


@pytest.mark.django_db
def test_readiness_waits_for_the_models_asked_to_be_warm_on_a_worker(settings):
    """A deployment asks /readyz?models=… before it sends traffic: 503 until a worker has
    loaded each model and run it once on its device (its warm-up), then 200."""
    from generations.worker import probe, runtime

    settings.DRAMATIQ_BROKER_URL = ""
    probe.reporter.forget()
    cold = Client().get("/readyz?models=demo-sd", HTTP_HOST=PROBE_HOST)
    assert cold.status_code == 503
    assert cold.json()["checks"]["models"] == "demo-sd: warm on 0 worker(s)"
    runtime.warm_up(["demo-sd"])
    warm = Client().get("/readyz?models=demo-sd", HTTP_HOST=PROBE_HOST)
    assert warm.status_code == 200, warm.json()
    assert warm.json()["checks"]["models"] == "demo-sd: warm on 1 worker(s)"
    # One model of two still cold (or unknown): not ready, and it says which.
    both = Client().get("/readyz?models=demo-sd,nope", HTTP_HOST=PROBE_HOST)
    assert both.status_code == 503
    assert both.json()["checks"]["models"] == (
        "demo-sd: warm on 1 worker(s), nope: warm on 0 worker(s)"
    )
    # Without the parameter the probe is what it was.
    assert set(Client().get("/readyz", HTTP_HOST=PROBE_HOST).json()["checks"]) == {
        "database",
        "broker",
    }
