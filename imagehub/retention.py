"""Retention: how long each kind of data is kept, and the purge that enforces it.

Each app registers the purges of its own data (`register`, from its AppConfig.ready): a
function that deletes at most `batch_size` rows past their retention in one short
transaction and returns how many it deleted. `purge_all` runs each one batch after batch
until it finds less than a batch; `manage.py purge` and the workers' housekeeping loop
(generations/worker/housekeeping.py, one worker at a time under `exclusively`) call it.
A purge added later (moderation and abuse records: IMAGEHUB_MODERATION_RETENTION_DAYS)
registers the same way.

What money needs is never registered: the ledger entries, the monthly totals and the
usage rollups stay (README, "Retention").
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

BatchPurge = Callable[[datetime, int], int]


@dataclass(frozen=True)
class Purge:
    name: str
    batch: BatchPurge
    keeps: str  # what it deletes and after how long, for `manage.py purge --list`


_purges: dict[str, Purge] = {}


def register(name: str, batch: BatchPurge, *, keeps: str) -> None:
    _purges[name] = Purge(name, batch, keeps)


def purges() -> list[Purge]:
    return list(_purges.values())


def purge_all(
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    only: list[str] | None = None,
    budget_seconds: float | None = None,
) -> dict[str, int]:
    """Run every registered purge (or `only` these) to the end, or until `budget_seconds`
    have passed (the rest waits for the next run). Returns rows deleted per purge."""
    now = now or timezone.now()
    batch_size = batch_size or settings.PURGE_BATCH_SIZE
    deadline = time.monotonic() + budget_seconds if budget_seconds else None
    done: dict[str, int] = {}
    for purge in purges():
        if only and purge.name not in only:
            continue
        done[purge.name] = 0
        while deadline is None or time.monotonic() < deadline:
            deleted = purge.batch(now, batch_size)
            done[purge.name] += deleted
            if deleted < batch_size:
                break
    return done


@contextlib.contextmanager
def exclusively(name: str) -> Iterator[bool]:
    """Whether this process holds the cluster-wide lock `name` (a PostgreSQL session
    advisory lock) for the block: only one worker purges at a time. Elsewhere (SQLite,
    one process) always True."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = zlib.crc32(f"imagehub:{name}".encode())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
