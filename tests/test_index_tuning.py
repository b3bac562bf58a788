"""Issue 24's index migrations on a database that has rows: backwards to the indexes
before them and forwards again (concurrently on PostgreSQL, plainly on SQLite), leaving
each big table with the indexes its queries use."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [
    ("accounts", "0016_usage_adapters"),
    ("generations", "0013_adapters"),
]


def single_column_indexes(table: str) -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return {
        name: info["columns"]
        for name, info in constraints.items()
        if info["index"] and not info["unique"] and not info["primary_key"]
    }


def pattern_indexes() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%varchar_pattern_ops%' "
            "AND tablename IN ('generations_generation', 'accounts_creditentry', "
            "'accounts_webhookdelivery', 'generations_generatedimage')"
        )
        return sorted(row[0] for row in cursor.fetchall())


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


def test_the_index_migrations_go_back_and_forth(tenant, make_generation):
    make_generation()  # rows in the tables, as on a live deployment
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    migrate(BEFORE)
    try:
        rollups = single_column_indexes("accounts_usagerollup")
        assert ["organization_id"] in rollups.values()
        assert ["api_key_id"] in rollups.values()
        deliveries = single_column_indexes("accounts_webhookdelivery")
        assert ["organization_id"] in deliveries.values()
        assert "webhook_delivery_list" not in deliveries
        assert "generation_incidents" not in single_column_indexes("generations_generation")
        if connection.vendor == "postgresql":
            assert len(pattern_indexes()) == 5  # ids, keys and the images' foreign key
    finally:
        migrate(latest)
    for table in ("accounts_usagerollup", "accounts_creditentry", "accounts_webhookdelivery"):
        assert ["organization_id"] not in single_column_indexes(table).values(), table
    assert ["generation_id"] not in single_column_indexes("generations_generatedimage").values()
    generations = single_column_indexes("generations_generation")
    assert ["organization_id"] not in generations.values()
    assert generations["generation_incidents"] == ["created_at"]
    assert single_column_indexes("accounts_webhookdelivery")["webhook_delivery_list"] == [
        "organization_id",
        "id",
    ]
    if connection.vendor == "postgresql":
        assert pattern_indexes() == []
