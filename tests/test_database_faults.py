"""A dropped database connection costs at most the statement in flight: the next request
gets a checked connection, an idempotent worker write is retried once, and what still
fails is a 503 in the error envelope, never a 500."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection

pytestmark = pytest.mark.django_db(transaction=True)


def terminate_backends() -> int:
    """pg_terminate_backend on every other connection to the test database, from a
    connection of its own (what a failover or a PgBouncer restart does to them)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as killer:
        rows = killer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (CI has it)")
    yield
    connection.close()  # the test may leave this thread's connection dead


def test_a_request_after_the_connection_dropped_is_served(postgres, api):
    assert api.get("/v1/credits").status_code == 200
    # Between two requests Django hands its connection back to the pool (the test
    # client skips that step, so it is done here); then the database drops them all.
    connection.close()
    assert terminate_backends() >= 1
    response = api.get("/v1/credits")
    assert response.status_code == 200, response.content


def test_an_idempotent_worker_write_survives_a_dropped_connection(postgres, make_generation):
    from generations import lifecycle
    from generations.models import Generation

    generation = make_generation()
    terminate_backends()  # this thread's connection dies while it holds it
    assert lifecycle.generation_claim(generation_id=generation.id, worker="w:1")
    assert Generation.objects.get(pk=generation.pk).status == "running"


def test_a_database_outage_is_a_503_in_the_envelope(api, monkeypatch):
    from generations import selectors

    def down(**kwargs):
        raise OperationalError("connection to server at 127.0.0.1, port 5432 failed")

    monkeypatch.setattr(selectors, "generation_get_owned", down)
    response = api.get("/v1/images/generations/gen_x")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    error = response.json()["error"]
    assert error["code"] == "database_unavailable" and error["type"] == "server_error"
