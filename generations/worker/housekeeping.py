"""The workers' housekeeping loop: every IMAGEHUB_PURGE_INTERVAL_SECONDS (0: never) one
worker at a time (a PostgreSQL advisory lock; the others skip the turn) runs the
retention purge (imagehub/retention.py: images, records, webhook deliveries,
idempotency keys, in batches of short transactions) and sums the last settled days of
usage for the operator dashboard (accounts/usage_days.py)."""

from __future__ import annotations

import logging

from django.conf import settings

from accounts.usage_days import usage_days_summarize_recent
from generations.worker.liveness import _Loop
from imagehub import retention

logger = logging.getLogger(__name__)


class Housekeeping(_Loop):
    name = "imagehub-housekeeping"

    def interval(self) -> float:
        return settings.PURGE_INTERVAL_SECONDS

    def start(self) -> None:
        if settings.PURGE_INTERVAL_SECONDS > 0:
            super().start()

    def tick(self) -> None:
        with retention.exclusively("purge") as held:
            if not held:
                return  # another worker's turn
            # Within one interval, so that a backlog never makes two runs overlap.
            done = retention.purge_all(budget_seconds=settings.PURGE_INTERVAL_SECONDS / 2)
            usage_days_summarize_recent()
        if any(done.values()):
            logger.info("retention purge: %s", done)


housekeeping = Housekeeping()
