"""Retention: `manage.py purge` deletes what is past its time, in batches, through the
storage, and never what money needs; purged images answer 410."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import CreditEntry, IdempotencyKey, MonthlySpend, Organization, UsageRollup
from generations.models import GeneratedImage, Generation
from imagehub import retention
from imagehub.storage import images as storage
from tests.jobs import finish_by_hand

pytestmark = pytest.mark.django_db


def _money(org) -> tuple:
    org = Organization.objects.get(pk=org.pk)
    return (
        org.credit_balance,
        org.credits_held,
        list(CreditEntry.objects.order_by("pk").values_list("idempotency_key", "amount", "held")),
        list(MonthlySpend.objects.order_by("pk").values_list("api_key_id", "month", "amount")),
        list(UsageRollup.objects.order_by("pk").values_list("hour", "requests", "credits")),
    )


def _days_later(days: float):
    """A purge run `days` from now (the clock moves, the rows stay as written)."""
    return timezone.now() + timedelta(days=days)


@pytest.fixture
def finished(make_generation):
    def make(**fields):
        return finish_by_hand(make_generation(**fields).id)

    return make


def test_images_past_retention_are_deleted_in_batches_and_money_stays(
    finished, tenant, settings, api, monkeypatch
):
    settings.IMAGE_RETENTION_DAYS = 30
    generations = [finished() for _ in range(3)]
    files = {g.id: list(g.images.values_list("file", flat=True)) for g in generations}
    assert all(storage.exists(name) for names in files.values() for name in names)
    money = _money(tenant.org)
    batches = []
    batch = retention._purges["generation_images"].batch
    monkeypatch.setitem(
        retention._purges,
        "generation_images",
        retention.Purge(
            "generation_images", lambda *a: batches.append(batch(*a)) or batches[-1], ""
        ),
    )

    assert retention.purge_all(now=_days_later(29), only=["generation_images"]) == {
        "generation_images": 0
    }
    done = retention.purge_all(now=_days_later(31), batch_size=2, only=["generation_images"])

    assert done == {"generation_images": 3} and batches == [0, 2, 1]
    for generation in generations:
        generation.refresh_from_db()
        assert generation.purged_at is not None and generation.charged > 0
        assert not any(storage.exists(name) for name in files[generation.id])
        assert not GeneratedImage.objects.filter(generation=generation).exists()
    assert _money(tenant.org) == money
    call_command("reconcile_ledger", verbosity=0)

    gone = api.get(f"/v1/images/generations/{generations[0].id}")
    assert gone.status_code == 410
    error = gone.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "image_gone"
    assert "30 days" in error["message"]
    # Listing still shows the purged generation (items carry no images).
    listed = [item["id"] for item in api.get("/v1/images/generations").json()["data"]]
    assert generations[0].id in listed


def test_a_signed_link_to_a_purged_image_answers_410(finished, settings, api, client):
    settings.IMAGE_RETENTION_DAYS = 30
    generation = finished(response_format="url")
    link = api.get(f"/v1/images/generations/{generation.id}").json()["data"][0]["url"]
    path = urlsplit(link)
    assert client.get(f"{path.path}?{path.query}").status_code == 200
    retention.purge_all(now=_days_later(31), only=["generation_images"])
    response = client.get(f"{path.path}?{path.query}")
    assert response.status_code == 410 and response.json()["error"]["code"] == "image_gone"


def test_records_past_retention_are_deleted_and_the_ledger_stays(finished, tenant, settings):
    settings.GENERATION_RETENTION_DAYS = 400
    generation = finished()
    money = _money(tenant.org)
    done = retention.purge_all(
        now=_days_later(401), only=["generation_images", "generation_records"]
    )
    assert done == {"generation_images": 1, "generation_records": 1}
    assert not Generation.objects.exists()
    assert _money(tenant.org) == money  # entries gen:<id>:… and the monthly totals stay
    assert CreditEntry.objects.filter(generation_id=generation.id).count() == 2


def test_running_work_is_never_purged(make_generation, settings):
    settings.IMAGE_RETENTION_DAYS = 1
    settings.GENERATION_RETENTION_DAYS = 1
    queued = make_generation()
    assert retention.purge_all(now=_days_later(5)) == {
        "webhook_deliveries": 0,
        "idempotency_keys": 0,
        "generation_images": 0,
        "generation_records": 0,
        "moderation_blocks": 0,
    }
    assert Generation.objects.get(pk=queued.pk).purged_at is None


def test_batches_run_until_the_backlog_is_gone(tenant, settings):
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    long_ago = timezone.now() - timedelta(days=2)
    IdempotencyKey.objects.bulk_create(
        IdempotencyKey(
            organization=tenant.org, key=f"k{i}", fingerprint="f", reference="r",
            created_at=long_ago,
        )
        for i in range(7)
    )  # fmt: skip
    IdempotencyKey.objects.create(
        organization=tenant.org, key="new", fingerprint="f", reference="r"
    )
    assert retention.purge_all(only=["idempotency_keys"], batch_size=3) == {"idempotency_keys": 7}
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_only_one_process_purges_at_a_time(transactional_db):
    from django.db import connections

    with retention.exclusively("purge") as first:
        assert first
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                import zlib

                cursor.execute("SELECT pg_try_advisory_lock(%s)", [zlib.crc32(b"imagehub:purge")])
                assert cursor.fetchone()[0] is False
        finally:
            other.close()


def test_purge_names_are_checked():
    with pytest.raises(Exception, match="no purge named nope"):
        call_command("purge", "--only", "nope", stdout=StringIO())
    out = StringIO()
    call_command("purge", "--list", stdout=out)
    assert "IMAGEHUB_IMAGE_RETENTION_DAYS" in out.getvalue()
