"""Per-key request rate limits, shared by every web process through the Django cache
(Redis whenever REDIS_URL or a Redis broker is configured).

A fixed one-minute window per key: ``INCR ratelimit:<key id>:<minute>`` with a TTL. The
state of the window travels on the request so every response of the image API carries
OpenAI's ``x-ratelimit-*-requests`` headers, and a refusal carries ``Retry-After``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from imagehub.errors import RateLimited

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Window:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{self.reset_seconds}s",
        }


def rpm_limit_for(key) -> int | None:
    """The key's own limit, else its organization's default, else the server default."""
    for value in (key.rpm_limit, key.organization.default_rpm_limit, settings.DEFAULT_RPM_LIMIT):
        if value:
            return value
    return None


def hit(key) -> Window | None:
    """Count one request against the key's window; raise RateLimited past the limit."""
    limit = rpm_limit_for(key)
    if limit is None:
        return None
    now = time.time()
    window_start = int(now // WINDOW_SECONDS)
    reset = max(1, int((window_start + 1) * WINDOW_SECONDS - now + 0.999))
    counter = f"ratelimit:{key.pk}:{window_start}"
    cache.add(counter, 0, timeout=WINDOW_SECONDS + 5)
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add and incr
        cache.add(counter, 1, timeout=WINDOW_SECONDS + 5)
        count = 1
    window = Window(limit=limit, remaining=max(0, limit - count), reset_seconds=reset)
    if count > limit:
        raise RateLimited(
            f"Rate limit reached for this API key: {limit} requests per minute. "
            f"Try again in {reset}s.",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(reset), **window.headers()},
        )
    return window
