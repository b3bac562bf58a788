"""Each check of accounts/reconcile.py finds the disagreement it is for."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.ledger import credits_top_up
from accounts.models import MonthlySpend, Organization
from accounts.reconcile import (
    HeldWork,
    balance_mismatches,
    generation_mismatches,
    ledger_mismatches,
    monthly_spend_mismatches,
)

pytestmark = pytest.mark.django_db
MONTH = dt.date(2030, 1, 1)


def work(tenant, *, price=100, charged=0, finished=False) -> HeldWork:
    return HeldWork(
        reference="gen_reconcile",
        organization_id=tenant.org.pk,
        api_key_id=tenant.key.pk,
        month=MONTH,
        price=price,
        charged=charged,
        status="succeeded" if finished else "queued",
        finished=finished,
    )


def test_a_balance_that_does_not_match_the_ledger(tenant):
    assert list(ledger_mismatches()) == []
    Organization.objects.filter(pk=tenant.org.pk).update(credit_balance=1)
    [line] = balance_mismatches()
    assert line.startswith(f"org {tenant.org.pk} (acme): balance 1 but ledger sums to")


def test_a_generation_without_its_hold(tenant):
    assert list(generation_mismatches([work(tenant)])) == [
        "generation gen_reconcile: no hold of its price 100"
    ]


def test_monthly_spend_against_the_work_of_the_month(tenant):
    item = work(tenant, price=100, charged=60, finished=True)
    missing = list(monthly_spend_mismatches([item]))
    assert missing == [
        f"monthly spend of org {tenant.org.pk} key None 2030-01 missing (60)",
        f"monthly spend of org {tenant.org.pk} key {tenant.key.pk} 2030-01 missing (60)",
    ]
    MonthlySpend.objects.create(organization=tenant.org, month=MONTH, amount=75)
    MonthlySpend.objects.create(organization=tenant.org, api_key=tenant.key, month=MONTH, amount=60)
    assert list(monthly_spend_mismatches([item])) == [
        f"monthly spend of org {tenant.org.pk} key None 2030-01: 75, generations say 60"
    ]


def test_the_combiner_reports_every_check(tenant):
    credits_top_up(organization=tenant.org, amount=5, memo="x")
    Organization.objects.filter(pk=tenant.org.pk).update(credit_balance=0)
    lines = list(ledger_mismatches([work(tenant)]))
    assert [line.split(" ")[0] for line in lines] == ["org", "generation", "monthly", "monthly"]
