"""What the pages carry besides their content: the zero-balance banner, money shown as
exact credits, and the favicon."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from accounts.ledger import credits_adjust
from accounts.models import User
from accounts.usage import usage_record
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db

TENANT_PAGES = ["/keys/", "/usage/", "/members/", "/webhooks/", "/organization/"]


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _pages(tenant) -> list[str]:
    return [*TENANT_PAGES, f"/keys/{tenant.key.pk}/", "/organization/new/"]


def test_zero_balance_banner_on_every_tenant_page():
    broke = Tenant("broke", credits=0)
    client = browser(broke.user)
    for url in _pages(broke):
        response = client.get(url)
        assert response.status_code == 200, url
        text = page_text(response)
        assert 'class="balance-banner"' in text, url
        assert "every API request is refused" in text and "insufficient_quota" in text
        assert "Balance: <span" in text and ">0 credits</span>" in text
        # Who adds credits, and how; a tenant gets no admin link.
        assert "operator of this imagehub" in text
        assert "Add credits to the selected organizations" in text
        assert "/admin/" not in text


def test_no_banner_while_the_organization_has_credits(tenant):
    client = browser(tenant.user)
    for url in _pages(tenant):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "balance-banner" not in response.content.decode(), url
    # Spent down to nothing: the banner appears.
    credits_adjust(organization=tenant.org, amount=-tenant.org.credit_balance, memo="spent")
    assert "balance-banner" in client.get("/keys/").content.decode()


def test_staff_get_a_link_to_the_organization_in_the_admin():
    broke = Tenant("broke", credits=0)
    Tenant("other", credits=0)
    broke.user.is_staff = broke.user.is_superuser = True
    broke.user.save()
    client = browser(broke.user)
    text = page_text(client.get("/keys/"))
    link = re.search(r'<a href="([^"]+)">broke in the admin</a>', text)
    assert link, text
    admin_page = client.get(link.group(1).replace("&amp;", "&"))
    assert admin_page.status_code == 200
    listed = page_text(admin_page)
    assert "Add credits to the selected organizations" in listed
    assert ">broke</a>" in listed and ">other</a>" not in listed  # just this one


def test_money_is_shown_exactly(tenant):
    tenant.org.refresh_from_db()
    credits_adjust(
        organization=tenant.org, amount=1_900_000 - tenant.org.credit_balance, memo="to 1.9"
    )
    tenant.key.monthly_spend_cap = 12_345_678
    tenant.key.save()
    client = browser(tenant.user)

    usage = page_text(client.get("/usage/"))
    assert ">1.9 credits<" in usage and "1,900,000 micro-credits" in usage
    assert "2 cr" not in usage
    organization = page_text(client.get("/organization/"))
    assert 'title="1,900,000 micro-credits">1.9 credits</span>' in organization
    keys = page_text(client.get("/keys/"))
    assert ">12.345678 credits</span>/month" in keys
    detail = page_text(client.get(f"/keys/{tenant.key.pk}/"))
    assert "Spend this month" in detail and ">12.345678 credits</span>" in detail


def test_operator_dashboard_and_add_credits_show_credits(tenant):
    User.objects.create_superuser(email="ops@example.com", password="pw")
    client = Client()
    client.login(username="ops@example.com", password="pw")
    usage_record(
        organization_id=tenant.org.pk,
        api_key_id=tenant.key.pk,
        user_id=tenant.user.pk,
        model="demo-sd",
        hour=timezone.now().replace(minute=0, second=0, microsecond=0),
        succeeded=True,
        images=2,
        credits=1_234_567,
        input_tokens=0,
        output_tokens=0,
        latency_ms=900,
    )
    dashboard = page_text(client.get("/dashboard/"))
    assert (
        'Credits spent</span><span class="value">1.234567 credits</span>'
        '<span class="sub">1,234,567 micro-credits</span>'
    ) in dashboard
    amount = '<td class="amount"><span class="money" title="1,234,567 micro-credits">'
    assert dashboard.count(amount + "1.234567 credits</span></td>") == 2  # top orgs, per model
    form = page_text(
        client.post(
            "/admin/accounts/organization/",
            {"action": "add_credits", "_selected_action": [tenant.org.pk]},
        )
    )
    assert "balance 1,000 credits (1,000,000,000 micro-credits)" in form


def test_favicon():
    response = Client().get("/favicon.ico")
    assert response.status_code in (301, 302)
    assert response["Location"].endswith("/imagehub/favicon.svg")
    icon = Client().get(response["Location"])
    assert icon.status_code == 200
    assert b"<svg" in b"".join(icon.streaming_content if icon.streaming else [icon.content])


def test_pages_link_the_favicon(tenant):
    signed_in = browser(tenant.user).get("/keys/").content.decode()
    signed_out = Client().get("/login/").content.decode()
    admin = Client().get("/admin/login/").content.decode()
    for html in (signed_in, signed_out, admin):
        assert '<link rel="icon" href="/static/imagehub/favicon.svg"' in html
