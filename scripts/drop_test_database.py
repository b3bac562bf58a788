"""Drop this clone's test database if one is there (the name comes from
imagehub/settings_test.py: test_imagehub_<hash of the clone's path>).

`make test` runs this before the suite, for a run that was killed, and after it, for a
teardown that failed (pytest-django then only warns). Only this clone's database is
touched, so another clone's suite on the same PostgreSQL runs on undisturbed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["DJANGO_SETTINGS_MODULE"] = "imagehub.settings_test"


def main() -> int:
    from django.conf import settings

    database = settings.DATABASES["default"]
    if not database["ENGINE"].endswith("postgresql"):
        return 0  # SQLite: a file in the test output folder, replaced by the next run
    import psycopg
    from psycopg import sql

    name = database["TEST"]["NAME"]
    try:
        conn = psycopg.connect(
            host=database.get("HOST") or None,
            port=database.get("PORT") or None,
            user=database.get("USER") or None,
            password=database.get("PASSWORD") or None,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as exc:
        print(f"drop_test_database: PostgreSQL unreachable, nothing dropped ({exc})")
        return 0
    with conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            print(f"drop_test_database: dropped {name}, left behind by a test run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
