"""Dramatiq actors. Thin: an id in, a service call."""

import dramatiq
from django.conf import settings

from generations.services import GENERATE
from imagehub.broker import broker  # noqa: F401  (sets the global broker first)


@dramatiq.actor(
    actor_name=GENERATE,
    queue_name=settings.DRAMATIQ_QUEUE,
    max_retries=3,
    min_backoff=1_000,
    time_limit=settings.GENERATION_TIME_LIMIT_SECONDS * 1000,
)
def generate(generation_id: str) -> None:
    from generations.worker.jobs import run_generation  # imports torch: workers only

    run_generation(generation_id=generation_id)
