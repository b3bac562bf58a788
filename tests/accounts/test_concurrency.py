"""No overspend under concurrency: 200 simultaneous requests, money for exactly 10.

Real concurrent HTTP requests against a live multi-threaded server; every request thread
has its own database connection (PostgreSQL in CI), as in production.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings
from django.core.management import call_command

from accounts.models import CreditEntry, Organization
from generations.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 200
CLIENT_THREADS = 64  # in flight at once; PostgreSQL allows 100 connections here
BODY = {"prompt": "race", "size": "64x64", "num_inference_steps": 2}
UNIT = 100 + 9  # demo-sd: 100 per image + ceil(64 × 64 × 2 × 1000 / 10^6)


def _fire(url: str, secret: str) -> list[requests.Response]:
    start = threading.Barrier(CLIENT_THREADS)

    def one(i: int) -> requests.Response:
        if i < CLIENT_THREADS:
            start.wait()  # the first wave leaves together
        return requests.post(
            url,
            json=BODY,
            timeout=120,
            headers={"Authorization": f"Bearer {secret}", "Prefer": "respond-async"},
        )

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        return list(pool.map(one, range(REQUESTS)))


def _wait_until_settled(org) -> None:
    deadline = time.monotonic() + 120
    while Generation.objects.filter(organization=org, status__in=["queued", "running"]).exists():
        assert time.monotonic() < deadline, "generations did not finish"
        time.sleep(0.1)


def _report(name: str, figures: dict) -> None:
    out = settings.TEST_OUTPUT_DIR / "concurrency.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    results[name] = figures
    out.write_text(json.dumps(results, indent=2))
    print(name, figures)


def _check(responses, org, started: float, name: str) -> None:
    statuses = [r.status_code for r in responses]
    accepted = [r for r in responses if r.status_code == 202]
    refused = [r for r in responses if r.status_code == 429]
    assert len(accepted) == 10, statuses
    assert len(refused) == REQUESTS - 10, statuses
    assert {r.json()["error"]["code"] for r in refused} == {"insufficient_quota"}
    _wait_until_settled(org)
    org.refresh_from_db()
    assert Generation.objects.filter(organization=org, status="succeeded").count() == 10
    assert CreditEntry.objects.filter(organization=org, kind="capture").count() == 10
    call_command("reconcile_ledger")
    _report(
        name,
        {
            "requests": REQUESTS,
            "succeeded": len(accepted),
            "refused_429": len(refused),
            "final_balance": org.credit_balance,
            "held": org.credits_held,
            "seconds": round(time.monotonic() - started, 2),
        },
    )


def test_balance_for_exactly_ten(live_server):
    from tests.conftest import Tenant

    tenant = Tenant("racers", credits=10 * UNIT)
    started = time.monotonic()
    responses = _fire(f"{live_server.url}/v1/images/generations", tenant.secret)
    _check(responses, tenant.org, started, "balance")
    org = Organization.objects.get(pk=tenant.org.pk)
    assert org.credit_balance == 0 and org.credits_held == 0
    # Exactly ten holds were ever written: no request got past the lock on stale money.
    assert CreditEntry.objects.filter(organization=org, kind="hold").count() == 10


def test_key_monthly_cap_for_exactly_ten(live_server):
    from tests.conftest import Tenant

    tenant = Tenant("capped")
    _, secret = tenant.new_key(limits={"monthly_spend_cap": 10 * UNIT})
    started = time.monotonic()
    responses = _fire(f"{live_server.url}/v1/images/generations", secret)
    _check(responses, tenant.org, started, "key_monthly_cap")
    org = Organization.objects.get(pk=tenant.org.pk)
    assert org.credit_balance == tenant.CREDITS - 10 * UNIT and org.credits_held == 0
