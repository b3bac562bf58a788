"""Rate limits, shared by every web process through the Django cache (Redis whenever
REDIS_URL or a Redis broker is configured). Every limit is a fixed window counted by
`window_count`:

- per-key requests per minute on the image API (`hit`): ``ratelimit:<key id>:<minute>``.
  The state of the window travels on the request so every response of the image API
  carries OpenAI's ``x-ratelimit-*-requests`` headers, and a refusal carries
  ``Retry-After``;
- sign-in and password-reset attempts, per client address and per account
  (`signin_blocked_for`, `signin_record`): ``throttle:<kind>:addr|acct:…:<window>``. Past
  the limit the page answers 429 with a message saying how long to wait
  (accounts/views/signin.py). Failed sign-ins count; every password-reset request counts
  (each one may send an email).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from imagehub.errors import RateLimited


def window_count(counter: str, *, window_seconds: int) -> int:
    """Count one event in the fixed window whose cache key is `counter` and return the
    window's count so far. The entry outlives its window by a few seconds, then expires."""
    timeout = window_seconds + 5
    cache.add(counter, 0, timeout=timeout)
    try:
        return cache.incr(counter)
    except ValueError:  # expired between add and incr
        cache.add(counter, 1, timeout=timeout)
        return 1


# --- requests per minute, per API key ----------------------------------------------------

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
    count = window_count(f"ratelimit:{key.pk}:{window_start}", window_seconds=WINDOW_SECONDS)
    window = Window(limit=limit, remaining=max(0, limit - count), reset_seconds=reset)
    if count > limit:
        raise RateLimited(
            f"Rate limit reached for this API key: {limit} requests per minute. "
            f"Try again in {reset}s.",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(reset), **window.headers()},
        )
    return window


# --- sign-in and password-reset attempts --------------------------------------------------


@dataclass(frozen=True)
class SignInLimit:
    per_address: int
    per_account: int
    window_seconds: int


SIGNIN_LIMITS = {
    "login": SignInLimit(per_address=30, per_account=10, window_seconds=15 * 60),
    "password_reset": SignInLimit(per_address=10, per_account=3, window_seconds=60 * 60),
}


def _signin_counters(kind: str, address: str, account: str) -> list[tuple[str, int]]:
    """(cache key, most attempts) of each window an attempt of `kind` counts in."""
    limit = SIGNIN_LIMITS[kind]
    window = int(time.time() // limit.window_seconds)
    counters = [(f"throttle:{kind}:addr:{address}:{window}", limit.per_address)]
    account = account.strip().lower()
    if account:
        digest = hashlib.sha256(account.encode()).hexdigest()[:32]
        counters.append((f"throttle:{kind}:acct:{digest}:{window}", limit.per_account))
    return counters


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def signin_blocked_for(kind: str, *, address: str, account: str) -> int:
    """Seconds until another attempt is allowed (0: allowed now)."""
    counters = _signin_counters(kind, address, account)
    counts = cache.get_many([counter for counter, _ in counters])
    for counter, most in counters:
        if counts.get(counter, 0) >= most:
            window = SIGNIN_LIMITS[kind].window_seconds
            return int(window - time.time() % window) + 1
    return 0


def signin_record(kind: str, *, address: str, account: str) -> None:
    """Count an attempt of `kind` against its address and its account."""
    for counter, _ in _signin_counters(kind, address, account):
        window_count(counter, window_seconds=SIGNIN_LIMITS[kind].window_seconds)


def signin_message(wait_seconds: int) -> str:
    minutes = max(1, -(-wait_seconds // 60))
    return (
        f"Too many attempts. For your account's safety, try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}."
    )
