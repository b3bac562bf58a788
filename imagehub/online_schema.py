"""Index changes on big tables that a live deployment can run: on PostgreSQL they build
and drop indexes CONCURRENTLY (no lock that stops writes to a table of millions of
rows; the migration must say `atomic = False`), elsewhere (the embedded SQLite) the
plain operation.

- `AddIndexOnline` / `RemoveIndexOnline`: Django's Add/RemoveIndexConcurrently, with
  the plain AddIndex/RemoveIndex off PostgreSQL.
- `drop_foreign_key_index(app, model, field)`: the state says `db_index=False` on a
  foreign key whose single-column index a composite index beginning with the same
  column already serves; the database drops that index (found by introspection, whatever
  its generated name) and a reverse migration builds it again.
- `drop_pattern_index(app, model, field)`: on PostgreSQL Django adds a second index,
  `<name>_like` with varchar_pattern_ops, to every indexed or unique CharField, for
  `LIKE 'prefix%'` lookups; this drops it where no query makes such a lookup (the
  admin's searches are case-insensitive, `UPPER(...) LIKE`, which it cannot serve).
"""

from __future__ import annotations

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations
from django.db.migrations.operations import AddIndex, RemoveIndex


def _online(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class _PlainOffPostgreSQL:
    """Runs the concurrent operation it is mixed into on PostgreSQL, `plain` elsewhere."""

    plain: type

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if _online(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if _online(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexOnline(_PlainOffPostgreSQL, AddIndexConcurrently):
    plain = AddIndex


class RemoveIndexOnline(_PlainOffPostgreSQL, RemoveIndexConcurrently):
    plain = RemoveIndex


def _table_and_column(apps, app_label: str, model_name: str, field_name: str):
    model = apps.get_model(app_label, model_name)
    return model._meta.db_table, model._meta.get_field(field_name).column


def _single_column_indexes(schema_editor, table: str, column: str) -> list[str]:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, info in constraints.items()
        if info["columns"] == [column]
        and info["index"]
        and not (info["unique"] or info["primary_key"] or info.get("foreign_key"))
        and info.get("type") in (None, "btree", "idx")
    ]


def drop_foreign_key_index(app_label: str, model_name: str, field_name: str, field):
    """The operation for `field` (the foreign key as the model now declares it, with
    `db_index=False`)."""

    def forwards(apps, schema_editor):
        table, column = _table_and_column(apps, app_label, model_name, field_name)
        concurrently = "CONCURRENTLY " if _online(schema_editor) else ""
        for name in _single_column_indexes(schema_editor, table, column):
            schema_editor.execute(
                f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}"
            )

    def backwards(apps, schema_editor):
        table, column = _table_and_column(apps, app_label, model_name, field_name)
        concurrently = "CONCURRENTLY " if _online(schema_editor) else ""
        quoted = schema_editor.quote_name(column)
        made = [(schema_editor._create_index_name(table, [column]), quoted)]
        target = apps.get_model(app_label, model_name)._meta.get_field(field_name).target_field
        if _online(schema_editor) and target.db_type(schema_editor.connection).startswith(
            "varchar"
        ):  # and the `_like` twin Django makes for a key to a varchar column
            made.append(
                (
                    schema_editor._create_index_name(table, [column], suffix="_like"),
                    f"{quoted} varchar_pattern_ops",
                )
            )
        for name, columns in made:
            schema_editor.execute(
                f"CREATE INDEX {concurrently}IF NOT EXISTS {schema_editor.quote_name(name)} "
                f"ON {schema_editor.quote_name(table)} ({columns})"
            )

    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AlterField(model_name=model_name, name=field_name, field=field)
        ],
        database_operations=[migrations.RunPython(forwards, backwards, atomic=False)],
    )


def drop_pattern_index(app_label: str, model_name: str, field_name: str):
    def forwards(apps, schema_editor):
        if not _online(schema_editor):
            return  # only PostgreSQL has them
        table, column = _table_and_column(apps, app_label, model_name, field_name)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = %s AND indexdef LIKE %s",
                [table, f"%({column} varchar_pattern_ops)"],
            )
            names = [row[0] for row in cursor.fetchall()]
        for name in names:
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}"
            )

    def backwards(apps, schema_editor):
        if not _online(schema_editor):
            return
        table, column = _table_and_column(apps, app_label, model_name, field_name)
        name = schema_editor._create_index_name(table, [column], suffix="_like")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {schema_editor.quote_name(name)} "
            f"ON {schema_editor.quote_name(table)} "
            f"({schema_editor.quote_name(column)} varchar_pattern_ops)"
        )

    return migrations.RunPython(forwards, backwards, atomic=False)
