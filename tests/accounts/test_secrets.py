"""A fresh key used for a real generation leaves no plaintext in the database or logs."""

import logging
import shutil
import subprocess

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def _database_dump() -> str:
    """The whole database as text: pg_dump on PostgreSQL, iterdump on SQLite."""
    if connection.vendor == "postgresql":
        params = connection.settings_dict
        assert shutil.which("pg_dump"), "pg_dump comes with PostgreSQL's client"
        return subprocess.run(
            [
                "pg_dump",
                "--data-only",
                "-h",
                params["HOST"] or "127.0.0.1",
                "-p",
                str(params["PORT"] or 5432),
                "-U",
                params["USER"] or "postgres",
                params["NAME"],
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return "\n".join(connection.connection.iterdump())


def test_generating_with_a_fresh_key_stores_and_logs_no_secret(tenant, caplog):
    from tests.conftest import bearer_client

    caplog.set_level(logging.DEBUG)
    key, secret = tenant.new_key(name="fresh")
    client = bearer_client(secret)
    response = client.post(
        "/v1/images/generations", {"prompt": "secretless", "size": "64x64"}, format="json"
    )
    assert response.status_code == 200
    # A wrong secret that shares the prefix is logged about and refused, not echoed.
    assert bearer_client(secret[:-4] + "AAAA").get("/v1/models").status_code == 401
    dump = _database_dump()
    assert key.prefix in dump  # the dump is real and holds the key's row
    assert secret not in dump and secret[17:] not in dump
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert secret not in logged and secret[17:] not in logged
    assert response.json()["id"] in logged  # the job log lines were captured
