"""Throttling of sign-in and password-reset attempts, per client address and per account.

Fixed windows in Django's cache (Redis when configured, so every web process shares them):
past the limit the page answers 429 with a message saying how long to wait. Failed
sign-ins count; every password-reset request counts (each one may send an email).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass(frozen=True)
class Limit:
    per_address: int
    per_account: int
    window_seconds: int


LIMITS = {
    "login": Limit(per_address=30, per_account=10, window_seconds=15 * 60),
    "password_reset": Limit(per_address=10, per_account=3, window_seconds=60 * 60),
}


def _keys(kind: str, address: str, account: str) -> list[tuple[str, int]]:
    limit = LIMITS[kind]
    window = int(time.time() // limit.window_seconds)
    keys = [(f"throttle:{kind}:addr:{address}:{window}", limit.per_address)]
    account = account.strip().lower()
    if account:
        digest = hashlib.sha256(account.encode()).hexdigest()[:32]
        keys.append((f"throttle:{kind}:acct:{digest}:{window}", limit.per_account))
    return keys


def address_of(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def blocked_for(kind: str, *, address: str, account: str) -> int:
    """Seconds until another attempt is allowed (0: allowed now)."""
    counts = cache.get_many([key for key, _ in _keys(kind, address, account)])
    for key, most in _keys(kind, address, account):
        if counts.get(key, 0) >= most:
            window = LIMITS[kind].window_seconds
            return int(window - time.time() % window) + 1
    return 0


def record(kind: str, *, address: str, account: str) -> None:
    for key, _ in _keys(kind, address, account):
        if not cache.add(key, 1, timeout=LIMITS[kind].window_seconds + 5):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=LIMITS[kind].window_seconds + 5)


def message(wait_seconds: int) -> str:
    minutes = max(1, -(-wait_seconds // 60))
    return (
        f"Too many attempts. For your account's safety, try again in {minutes} "
        f"minute{'s' if minutes != 1 else ''}."
    )
