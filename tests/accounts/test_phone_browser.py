"""Every tenant page, the sign-in pages and the operator dashboard on a phone (390 × 844,
touch, 3× pixels) in headless Debian chromium: nothing is wider than the screen, the
header's navigation and user menu stay on screen and answer a tap, and a key can be
created and its secret read on the phone. Screenshots go to the test output.
"""

from __future__ import annotations

import pytest

from accounts import members
from accounts.ledger import credits_adjust
from accounts.models import Membership, User
from accounts.selectors import Caller
from accounts.services import api_key_create, organization_create
from accounts.webhooks.delivery import sender
from accounts.webhooks.endpoints import webhook_endpoint_set
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.accounts.conftest import browser_page
from tests.conftest import Tenant

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
WIDTH, HEIGHT = 390, 844
# Long but ordinary: the header and the tables must cope with names like these.
EMAIL = "margaret.hamilton@apollo-guidance-computer.example"
NAV = ["Keys", "Usage", "Members", "Webhooks", "Adapters", "Organization"]

# The elements that stick out past the right edge, for the failure message.
WIDEST = """(width) => [...document.querySelectorAll('body *')]
  .filter((el) => el.getBoundingClientRect().right > width + 0.5)
  .filter((el) => !el.parentElement.closest('.table-wrap, .table-scroll'))
  .slice(0, 8)
  .map((el) => `${el.tagName.toLowerCase()}.${el.className}: right=${Math.round(
    el.getBoundingClientRect().right)}`)"""


@pytest.fixture
def phone(monkeypatch):
    """A Playwright page in headless chromium emulating a phone."""
    with browser_page(
        monkeypatch,
        viewport={"width": WIDTH, "height": HEIGHT},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=3,
    ) as page:
        yield page


@pytest.fixture
def workspace():
    """An owner with a long email, in an organization with traffic, several keys, a
    pending invitation and failed webhook deliveries; its balance is then spent to 0,
    so every page also carries the zero-balance banner. Returns (user, invitation token).
    """
    tenant = Tenant("acme")
    user = tenant.member(Membership.Role.OWNER, email=EMAIL)
    user.set_password(PASSWORD)
    user.save()
    organization_create(name="Hamilton Software Engineering Group", owner=user)
    api_key_create(
        organization=tenant.org,
        created_by=user,
        name="nightly batch renderer for the marketing site",
        allowed_models=["demo-sd", "demo-flux"],
        limits={"rpm_limit": 600, "max_concurrent": 4, "monthly_spend_cap": 12_500_000},
    )
    # The default webhook names a host that resolved to loopback after it was saved:
    # each generation's "completed" delivery is refused at its first attempt and fails.
    webhook_endpoint_set(organization=tenant.org, url="", events=["completed"])
    WebhookEndpoint.objects.filter(organization=tenant.org).update(
        url="http://localhost:9/imagehub/a-rather-long-path/that-goes-on?and=on"
    )
    for body in ({"prompt": "a", "n": 2, "size": "64x64"}, {"prompt": "b", "model": "demo-flux"}):
        response = tenant.client().post("/v1/images/generations", body, format="json")
        assert response.status_code == 200, response.content
    assert sender.wait_idle(10)
    assert [d.status for d in WebhookDelivery.objects.all()] == ["failed", "failed"]
    caller = Caller(organization=tenant.org, user=user, role=Membership.Role.OWNER)
    _, token = members.invitation_create(caller=caller, email="new.colleague@example.org")
    tenant.org.refresh_from_db()
    credits_adjust(organization=tenant.org, amount=-tenant.org.credit_balance, memo="spent")
    return user, token


def _fits(page, shots, name: str) -> None:
    """The page is no wider than the phone; saves a full-page screenshot."""
    page.wait_for_load_state("load")
    page.screenshot(path=shots / f"phone-{name}.png", full_page=True)
    scroll_width, inner_width = page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )
    # A mobile browser widens its layout viewport (innerWidth) to fit content that
    # overflows, so the check is against the phone's width as well.
    assert scroll_width <= inner_width == WIDTH, (
        f"{name}: the page is {scroll_width}px wide, the viewport {inner_width}px, on a "
        f"{WIDTH}px screen; sticking out: {page.evaluate(WIDEST, WIDTH)}"
    )


def _on_screen(locator) -> None:
    sync_api.expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, f"off screen: {box}"
    assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, f"off screen: {box}"


def _header_on_screen(page) -> None:
    for label in NAV:
        _on_screen(page.locator(".mainnav").get_by_role("link", name=label, exact=True))
    _on_screen(page.locator(".usermenu summary"))


def test_every_page_fits_a_phone_and_works_by_touch(workspace, live_server, phone, shots):
    user, token = workspace
    base = live_server.url

    # Signed out: sign-in, sign-up, password reset, an invitation.
    for name, path in [
        ("login", "/login/"),
        ("signup", "/signup/"),
        ("password-reset", "/password-reset/"),
        ("invitation", f"/invite/{token}/"),
    ]:
        phone.goto(base + path)
        _fits(phone, shots, name)

    phone.goto(f"{base}/login/")
    phone.get_by_label("Email").fill(user.email)
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Sign in").tap()
    phone.wait_for_url("**/keys/")
    sync_api.expect(phone.locator(".balance-banner")).to_contain_text("0 credits")
    _fits(phone, shots, "keys")
    _header_on_screen(phone)

    # Every page of the navigation, reached by tapping its link.
    for label, path in [
        ("Usage", "/usage/"),
        ("Members", "/members/"),
        ("Webhooks", "/webhooks/"),
        ("Adapters", "/adapters/"),
        ("Organization", "/organization/"),
        ("Keys", "/keys/"),
    ]:
        phone.locator(".mainnav").get_by_role("link", name=label, exact=True).tap()
        phone.wait_for_url(f"**{path}")
        _fits(phone, shots, label.lower())
        _header_on_screen(phone)
    assert phone.locator("svg.chart").count() == 0  # (on the keys page now)

    # A key's page, from its row (the table scrolls inside its own box).
    row = phone.locator("tr", has_text="nightly batch renderer")
    row.get_by_role("link", name="Edit").tap()
    phone.wait_for_url("**/keys/*/")
    _fits(phone, shots, "key-detail")
    _header_on_screen(phone)

    phone.goto(f"{base}/organization/new/")
    _fits(phone, shots, "organization-new")

    # One real task on the phone: a new key, its secret shown once.
    phone.goto(f"{base}/keys/")
    form = phone.locator("#new-key form")
    form.get_by_label("Name").fill("phone")
    form.get_by_role("button", name="Create key").tap()
    dialog = phone.locator("dialog#reveal")
    sync_api.expect(dialog).to_contain_text("will not be shown again")
    secret = dialog.locator("#secret").input_value()
    assert secret.startswith("ihk_")
    phone.screenshot(path=shots / "phone-keys-reveal.png")
    _on_screen(dialog.get_by_role("button", name="Copy"))
    _on_screen(dialog.get_by_role("button", name="I have copied it"))
    dialog.get_by_role("button", name="I have copied it").tap()
    sync_api.expect(dialog).to_have_count(0)
    assert secret not in phone.content()
    sync_api.expect(phone.locator("tr", has_text="phone")).to_contain_text(secret[-4:])
    _fits(phone, shots, "keys-after-create")

    # The user menu opens on screen and signs out.
    phone.locator(".usermenu summary").tap()
    sign_out = phone.locator(".usermenu").get_by_role("button", name="Sign out")
    phone.screenshot(path=shots / "phone-usermenu.png")
    _on_screen(sign_out)
    sign_out.tap()
    phone.wait_for_url("**/login/")

    # The operator dashboard, signed in through the admin.
    User.objects.create_superuser(email="ops@example.com", password=PASSWORD)
    phone.goto(f"{base}/admin/login/?next=/dashboard/")
    phone.locator("#id_username").fill("ops@example.com")
    phone.locator("#id_password").fill(PASSWORD)
    phone.locator("input[type=submit]").tap()
    phone.wait_for_url(f"{base}/dashboard/")
    # Usage (2), the queue (2), moderation blocks by organization and by category (2).
    assert phone.locator("svg.chart").count() == 6
    _fits(phone, shots, "operator-dashboard")
