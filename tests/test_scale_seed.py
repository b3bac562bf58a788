"""make bench-scale's seeding at a tiny volume: the rows it writes in SQL are in the
shapes the code writes (the ledger reconciles), and the operator dashboard's daily
summaries add up to the rollups they summarize."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum

from accounts.dashboards import operator_overview
from accounts.models import UsageDay, UsageRollup
from accounts.usage import histogram_merge, percentile_ms
from tests import scale_seed
from tests.processes import database_url_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seeded(tenant, other_tenant):
    if connection.vendor != "postgresql":
        pytest.skip("the seeding is PostgreSQL SQL")
    dsn = database_url_of(connection.settings_dict).replace("postgres://", "postgresql://", 1)
    volumes = scale_seed.Volumes(scale=0.0005, small_tenants=3, days=4, delivery_body_bytes=64)
    scale_seed.seed_targets(dsn, org=tenant.org.pk, key=tenant.key.pk)
    return scale_seed.seed(
        dsn,
        volumes,
        big_org=tenant.org.pk,
        big_key=tenant.key.pk,
        small_org=other_tenant.org.pk,
        small_key=other_tenant.key.pk,
    )


def test_the_seeded_money_reconciles(seeded):
    assert seeded["generations_generation"] == 500 + 3 * 5 + 2
    assert seeded["accounts_creditentry"] > 2 * 500
    call_command("reconcile_ledger", "--no-progress", verbosity=0)


def test_the_dashboard_summaries_add_up_to_the_rollups(seeded):
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=4)
    data = operator_overview(start=start, end=today + dt.timedelta(days=1))
    assert UsageDay.objects.count() >= 2  # the settled days were summed once
    rows = UsageRollup.objects.all()
    assert data["requests"] == rows.aggregate(n=Sum("requests"))["n"] > 0
    assert data["credits"] == rows.aggregate(n=Sum("credits"))["n"]
    merged = histogram_merge(rows.values_list("latency_histogram", flat=True))
    assert data["p95_ms"] == percentile_ms(merged, 0.95)
    again = operator_overview(start=start, end=today + dt.timedelta(days=1))
    assert again["p99_ms"] == data["p99_ms"] and again["top_organizations"]


def test_the_days_merged_in_the_database_equal_their_merge_in_python(seeded):
    from accounts import usage_days

    today = dt.datetime.now(dt.UTC).date()
    usage_days.usage_period(today - dt.timedelta(days=4), today + dt.timedelta(days=1))
    stored = UsageDay.objects.all()
    assert stored.count() >= 2
    rows = [{f: getattr(r, f) for f in usage_days.SUMMARY_FIELDS} for r in stored]
    merged = usage_days._merged_in_database(stored)
    assert merged["latency_histogram"] == histogram_merge(r["latency_histogram"] for r in rows)
    for field in ("by_organization", "by_model"):
        assert merged[field] == usage_days.merge_counts(r[field] for r in rows) != {}
    assert merged["totals"] == usage_days.merge_counts({"t": r["totals"]} for r in rows)["t"]
