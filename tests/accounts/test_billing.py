"""Money: exact prices, holds before work, capture of what was delivered, and 429s."""

from __future__ import annotations

import io

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import CreditEntry, Organization
from generations.models import Generation, ModelPrice

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"
# demo-sd: 100 per image + ceil(256 × 256 × 4 steps × 1000 / 10^6) = 100 + 263
UNIT_256_4 = 363


def balance(tenant) -> tuple[int, int]:
    org = Organization.objects.get(pk=tenant.org.pk)
    return org.credit_balance, org.credits_held


def entries(generation_id: str) -> list[tuple[str, int, int]]:
    return list(
        CreditEntry.objects.filter(generation_id=generation_id)
        .order_by("pk")
        .values_list("kind", "amount", "held")
    )


def test_price_is_held_then_captured(tenant, api):
    before, _ = balance(tenant)
    response = api.post(URL, {"prompt": "paid", "n": 2}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["price"] == 2 * UNIT_256_4
    assert body["usage"]["credits_charged"] == 2 * UNIT_256_4
    assert response["x-credits-charged"] == str(2 * UNIT_256_4)
    assert balance(tenant) == (before - 2 * UNIT_256_4, 0)
    assert entries(body["id"]) == [
        ("hold", -2 * UNIT_256_4, 2 * UNIT_256_4),
        ("capture", 0, -2 * UNIT_256_4),
    ]
    call_command("reconcile_ledger")


def test_failure_releases_everything(tenant, api, monkeypatch):
    from generations.engine.pipelines import Engine

    def broken(self, *args, **kwargs):
        raise RuntimeError("no luck")

    monkeypatch.setattr(Engine, "run", broken)
    before, _ = balance(tenant)
    response = api.post(URL, {"prompt": "fails"}, format="json")
    generation_id = response.json()["error"]["generation_id"]
    assert balance(tenant) == (before, 0)
    assert entries(generation_id) == [
        ("hold", -UNIT_256_4, UNIT_256_4),
        ("release", UNIT_256_4, -UNIT_256_4),
    ]
    assert Generation.objects.get(pk=generation_id).charged == 0
    call_command("reconcile_ledger")


def test_insufficient_balance_is_429_and_nothing_is_recorded(db):
    from tests.conftest import Tenant

    poor = Tenant("poor", credits=UNIT_256_4 - 1)
    response = poor.client().post(URL, {"prompt": "too dear"}, format="json")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert "balance" in error["message"]
    assert not Generation.objects.filter(organization=poor.org).exists()
    assert balance(poor) == (UNIT_256_4 - 1, 0)


def test_balance_message_is_exact_and_says_who_adds_credits(db):
    from tests.conftest import Tenant

    poor = Tenant("poor", credits=UNIT_256_4 - 1)
    message = poor.client().post(URL, {"prompt": "too dear"}, format="json").json()["error"]
    assert message["message"].startswith(
        f"Your organization 'poor' has a balance of 0.000362 credits ({UNIT_256_4 - 1} "
        f"micro-credits). This request costs 0.000363 credits ({UNIT_256_4} micro-credits)."
    )
    assert f"manage.py add_credits {poor.org.slug} <micro-credits>" in message["message"]

    broke = Tenant("broke", credits=0)
    error = broke.client().post(URL, {"prompt": "x"}, format="json").json()["error"]
    assert "has no credits (balance 0), so every request is refused" in error["message"]
    assert error["param"] is None and error["code"] == "insufficient_quota"


def test_new_organizations_get_the_starting_credits(db, settings, client):
    from accounts.services import organization_create

    assert organization_create(name="no grant").credit_balance == 0
    settings.STARTING_CREDITS = 2_500_000
    org = organization_create(name="granted")
    assert Organization.objects.get(pk=org.pk).credit_balance == 2_500_000
    grant = CreditEntry.objects.get(organization=org)
    assert (grant.kind, grant.amount, grant.idempotency_key) == (
        "topup",
        2_500_000,
        f"org:{org.pk}:starting-credits",
    )
    # create_api_key's new organization as well (and one made on the pages: same service).
    call_command("create_api_key", "new@example.com", "--org", "via-cli", stdout=io.StringIO())
    assert Organization.objects.get(name="via-cli").credit_balance == 2_500_000
    call_command("reconcile_ledger")


def test_monthly_caps_of_organization_and_key(tenant, api):
    Organization.objects.filter(pk=tenant.org.pk).update(monthly_spend_cap=UNIT_256_4 * 3)
    assert api.post(URL, {"prompt": "1", "n": 2}, format="json").status_code == 200
    refused = api.post(URL, {"prompt": "2", "n": 2}, format="json")
    assert refused.status_code == 429
    assert "organization's monthly spend cap" in refused.json()["error"]["message"]
    assert api.post(URL, {"prompt": "3"}, format="json").status_code == 200

    Organization.objects.filter(pk=tenant.org.pk).update(monthly_spend_cap=None)
    key, secret = tenant.new_key(limits={"monthly_spend_cap": UNIT_256_4})
    from tests.conftest import bearer_client

    capped = bearer_client(secret)
    assert capped.post(URL, {"prompt": "k1"}, format="json").status_code == 200
    refused = capped.post(URL, {"prompt": "k2"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert "API key's monthly spend cap" in refused.json()["error"]["message"]
    call_command("reconcile_ledger")


def test_staff_price_overrides_the_catalog(api):
    ModelPrice.objects.create(model="demo-sd", price_per_image=1000, price_per_megapixel_step=0)
    body = api.post(URL, {"prompt": "override", "n": 3}, format="json").json()
    assert body["price"] == 3000 and body["usage"]["credits_charged"] == 3000


def test_low_balance_notice_once_per_month(settings):
    from tests.conftest import Tenant

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    tenant = Tenant("frugal", credits=UNIT_256_4 * 4)
    Organization.objects.filter(pk=tenant.org.pk).update(low_balance_threshold=UNIT_256_4 * 3)
    api = tenant.client()
    for _ in range(3):
        assert api.post(URL, {"prompt": "spend"}, format="json").status_code == 200
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [tenant.user.email]
    assert "balance is low" in mail.outbox[0].subject


def test_add_credits_and_reconcile_commands(tenant, capsys):
    call_command("add_credits", tenant.org.slug, "2500", "--idempotency-key", "invoice-7")
    call_command("add_credits", tenant.org.slug, "2500", "--idempotency-key", "invoice-7")
    assert balance(tenant)[0] == tenant.CREDITS + 2500
    assert "already applied" in capsys.readouterr().out
    call_command("reconcile_ledger")
    # A balance changed behind the ledger's back is caught.
    Organization.objects.filter(pk=tenant.org.pk).update(credit_balance=1)
    with pytest.raises(CommandError, match="mismatch"):
        call_command("reconcile_ledger")


def test_admin_top_up_action(tenant, client):
    from accounts.models import User

    staff = User.objects.create_superuser(email="ops@example.com", password="pw")
    client.force_login(staff)
    url = "/admin/accounts/organization/"
    form = client.post(url, {"action": "add_credits", "_selected_action": [tenant.org.pk]})
    assert form.status_code == 200 and b"micro-credits" in form.content
    done = client.post(
        url,
        {
            "action": "add_credits",
            "_selected_action": [tenant.org.pk],
            "apply": "1",
            "amount": "777",
            "memo": "invoice 12",
        },
    )
    assert done.status_code == 302
    assert balance(tenant)[0] == tenant.CREDITS + 777
    listing = client.get(url).content.decode()
    assert "Added 0.000777 credits (777 micro-credits) to 1 organization(s)." in listing
    assert "1,000.000777 credits" in listing  # the balance, exactly
    assert CreditEntry.objects.filter(organization=tenant.org, memo="invoice 12").count() == 1
    call_command("reconcile_ledger")


def test_staff_edit_prices_in_admin(client, db):
    from accounts.models import User

    client.force_login(User.objects.create_superuser(email="ops@example.com", password="pw"))
    response = client.post(
        "/admin/generations/modelprice/add/",
        {"model": "demo-flux", "price_per_image": "5", "price_per_megapixel_step": "7"},
    )
    assert response.status_code == 302
    assert ModelPrice.objects.get(model="demo-flux").price_per_megapixel_step == 7


def test_edits_pay_for_the_steps_that_run(api):
    """Image-to-image denoises int(steps × strength) steps, and is priced so (plus its
    input's pixels)."""
    from tests.imagefiles import gradient_png, upload

    response = api.post(
        "/v1/images/edits",
        {
            "image": upload(gradient_png((256, 256))),
            "prompt": "half",
            "model": "demo-sd",
            "num_inference_steps": "4",
            "strength": "0.5",
        },
        format="multipart",
    )
    assert response.status_code == 200, response.content
    # 100 per image + ceil((256 × 256 × 2 steps + 256 × 256 input pixels) × 1000 / 10^6)
    # = 100 + ceil(196.608) = 297
    assert response.json()["usage"]["credits_charged"] == 297
