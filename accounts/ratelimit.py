"""Rate limits, shared by every web process through the Django cache (Redis whenever
REDIS_URL or a Redis broker is configured). Every limit is a fixed window counted by
`window_count`:

- per-key requests per minute on the image API (`hit`): ``ratelimit:<key id>:<minute>``.
  The state of the window travels on the request so every response of the image API
  carries OpenAI's ``x-ratelimit-*-requests`` headers, and a refusal carries
  ``Retry-After``;
- sign-in attempts, through every door that calls Django's ``authenticate()`` (the
  sign-in page, ``/admin/login/``): django-axes locks out one account *from one client
  address* after ``AXES_FAILURE_LIMIT`` failures (cache handler, cool-off
  ``AXES_COOLOFF_TIME``), so failures from an attacker's address never block the real
  user at theirs; `SignInBackend` (axes' backend, first in AUTHENTICATION_BACKENDS) adds
  a per-address limit on failures across accounts, against spraying;
- password-reset requests, per client address and per account
  (`signin_blocked_for`, `signin_record`): ``throttle:<kind>:addr|acct:…:<window>``;
  every request counts (each one may send an email).

Accounts are counted by `normalise_account`: NFKC (what Django's sign-in form applies
before the password is checked) and case-folded, so ``ｖic@v.test`` and ``VIC@V.TEST``
count as ``vic@v.test``. The client address is ``REMOTE_ADDR``: the peer, or the
``X-Forwarded-For`` address when the peer is a trusted proxy (gunicorn's
``--forwarded-allow-ips`` / ``FORWARDED_ALLOW_IPS``, loopback by default). Past a limit the
page answers 429 with a message saying how long to wait (accounts/views/signin.py).
"""

from __future__ import annotations

import hashlib
import time
import unicodedata
from dataclasses import dataclass

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
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
    # Per account (and address) the limit is axes' (settings.AXES_FAILURE_LIMIT).
    "login": SignInLimit(
        per_address=settings.SIGNIN_FAILURES_PER_ADDRESS, per_account=0, window_seconds=15 * 60
    ),
    "password_reset": SignInLimit(per_address=10, per_account=3, window_seconds=60 * 60),
    # Sign-ups and verification emails: each sends an email to the address given.
    "signup": SignInLimit(per_address=10, per_account=3, window_seconds=60 * 60),
}


def normalise_account(value: str | None) -> str:
    """One key per address however it is spelled: NFKC, as Django's sign-in form
    normalises the user name before the password is checked, then case-folded."""
    return unicodedata.normalize("NFKC", value or "").strip().casefold()


def axes_username(request, credentials: dict | None) -> str:
    """AXES_USERNAME_CALLABLE: the account an attempt is counted against."""
    raw = (credentials or {}).get("username")
    if raw is None and request is not None:
        raw = request.POST.get("username", "")
    return normalise_account(raw)


def _signin_counters(kind: str, address: str, account: str) -> list[tuple[str, int]]:
    """(cache key, most attempts) of each window an attempt of `kind` counts in."""
    limit = SIGNIN_LIMITS[kind]
    window = int(time.time() // limit.window_seconds)
    counters = [(f"throttle:{kind}:addr:{address}:{window}", limit.per_address)]
    account = normalise_account(account)
    if account and limit.per_account:
        digest = hashlib.sha256(account.encode()).hexdigest()[:32]
        counters.append((f"throttle:{kind}:acct:{digest}:{window}", limit.per_account))
    return counters


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def signin_blocked_for(kind: str, *, address: str, account: str) -> int:
    """Seconds until another attempt is allowed (0: allowed now)."""
    return signin_blocked(kind, address=address, account=account)[0]


def signin_blocked(kind: str, *, address: str, account: str) -> tuple[int, str | None]:
    """(seconds until another attempt is allowed, which limit: "address" or "account");
    (0, None) when allowed now. The address's limit is looked at first."""
    counters = _signin_counters(kind, address, account)
    counts = cache.get_many([counter for counter, _ in counters])
    for (counter, most), which in zip(counters, ("address", "account"), strict=False):
        if counts.get(counter, 0) >= most:
            window = SIGNIN_LIMITS[kind].window_seconds
            return int(window - time.time() % window) + 1, which
    return 0, None


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


class SignInBackend(AxesStandaloneBackend):
    """First in AUTHENTICATION_BACKENDS: refuses an attempt from an address past its
    limit of failures across accounts, then lets axes refuse an account locked out at
    this address. Either way the request is marked so that axes' middleware answers with
    the 429 page. Checks nothing when there is no request (scripts, tests' login())."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        wait = signin_blocked_for("login", address=client_address(request), account="")
        if wait:
            request.axes_locked_out = True
            request.signin_wait = wait
            raise AxesBackendPermissionDenied("Too many failed sign-ins from this address.")
        return super().authenticate(request, username, password, **kwargs)


def signin_failed(sender, credentials, request=None, **kwargs) -> None:
    """user_login_failed: a failure counts against its address (axes counts it against
    the account at that address)."""
    if request is not None:
        signin_record("login", address=client_address(request), account="")
