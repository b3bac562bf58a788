"""Django's PostgreSQL backend, whose pool replaces every dead connection at once.

The pool checks each connection before handing it out (CONN_HEALTH_CHECKS). When the
check fails, psycopg_pool discards that one connection, waits (0, then 1, 2, 4 … s: its
reconnection backoff) and tries the next one. A database blip (a failover, a PgBouncer
restart, pg_terminate_backend) kills every idle connection at once, so the first request
after it went through them one by one: with seven idle connections it waited 30 s and
failed with a 503 (and a worker's heartbeat could stall past the takeover time). Here
the first failed check tests every idle connection of the pool at once
(ConnectionPool.check()), and the pool opens new ones in their place while the request
waits for the first of them.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def pool_that_sweeps(**options) -> ConnectionPool:
    """A ConnectionPool whose failed check sweeps every idle connection."""
    pool: ConnectionPool | None = None

    def check(conn) -> None:
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            if pool is not None:
                pool.check()  # the others died with it: replace them all now
            raise

    pool = ConnectionPool(check=check, **options)
    return pool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if (
            self.alias == base.NO_DB_ALIAS
            or not pool_options
            or not self.settings_dict["CONN_HEALTH_CHECKS"]
        ):
            return super().pool
        if self.alias not in self._connection_pools:
            # As Django's own (django/db/backends/postgresql/base.py), with the check above.
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
            pool = pool_that_sweeps(
                kwargs={**self.get_connection_params(), "autocommit": True},
                open=False,  # opened on first use, as Django does
                configure=self._configure_connection,
                **({} if pool_options is True else pool_options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
