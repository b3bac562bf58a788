"""Webhooks: Standard Webhooks signatures, outbound safety (SSRF), the outbox with its
retries and backoff, events and their filters, the organization's default webhook and
secret rotation, the management API and the page."""

from __future__ import annotations

import base64
import json
import socket
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.models import Membership
from accounts.webhooks import delivery, endpoints, http, signing
from accounts.webhooks.models import WebhookDelivery, WebhookEndpoint
from generations.lifecycle import generation_fail
from generations.models import Generation
from generations.services import generation_cancel
from generations.worker.jobs import run_generation
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db

# The Standard Webhooks reference test vector (libraries/python/tests/test_webhooks.py,
# test_sign_function, in github.com/standard-webhooks/standard-webhooks).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def private_ok(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    return settings


@pytest.fixture
def endpoint(tenant):
    """The tenant's webhook settings with a signing secret and no default URL."""
    endpoint, secret = endpoints.webhook_endpoint_set(organization=tenant.org)
    return endpoint


def deliveries(**filters):
    return list(WebhookDelivery.objects.filter(**filters).order_by("pk"))


def attempt(row: WebhookDelivery, *, at: datetime | None = None) -> WebhookDelivery:
    """One attempt of a delivery, claimed and made the way a sender makes it, at `at`."""
    at = at or timezone.now()
    claimed = delivery.delivery_claim(delivery_id=row.pk, now=at)
    assert claimed is not None, "the delivery was not due"
    return delivery.delivery_attempt(delivery=claimed, now=at)


# --- signing -----------------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_test_vector():
    sig = signing.sign(
        VECTOR_SECRET, msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY
    )
    assert sig == VECTOR_SIGNATURE
    # Without the prefix, and unpadded, the key is the same.
    assert (
        signing.sign(
            VECTOR_SECRET.removeprefix("whsec_"),
            msg_id=VECTOR_ID,
            timestamp=VECTOR_TIMESTAMP,
            body=VECTOR_BODY,
        )
        == VECTOR_SIGNATURE
    )
    assert signing.verify(
        VECTOR_SECRET,
        msg_id=VECTOR_ID,
        timestamp=VECTOR_TIMESTAMP,
        body=VECTOR_BODY.encode(),
        header=f"v1,bm90IGl0 {VECTOR_SIGNATURE}",
    )
    assert not signing.verify(
        VECTOR_SECRET, msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP + 1, body=VECTOR_BODY,
        header=VECTOR_SIGNATURE,
    )  # fmt: skip


def test_new_secrets_are_whsec_base64_of_24_random_bytes():
    a, b = signing.new_secret(), signing.new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 24
    with pytest.raises(ValueError):
        signing.secret_key("whsec_")


# --- outbound safety ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
        "0.0.0.0", "100.64.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    ],
)  # fmt: skip
def test_private_loopback_link_local_multicast_reserved_addresses_are_refused(address):
    assert http.address_refused(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert http.address_refused(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://[::1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://localhost/hook",  # a name resolving to loopback
        "http://2130706433/hook",  # 127.0.0.1 written as one number
        "http://0x7f.1/hook",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_post_refuses_forbidden_destinations(url):
    with pytest.raises(http.DestinationRefused):
        http.post(url, b"{}", {}, timeout=1, max_response_bytes=10)


def test_a_dns_name_resolving_to_a_private_address_is_refused(monkeypatch):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        # One public and one private answer: every address is checked.
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(http.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(http.DestinationRefused) as refused:
        http.post("https://hooks.example.com/x", b"{}", {}, timeout=1, max_response_bytes=1)
    # Said without the resolved addresses (the log is the tenant's to read).
    assert str(refused.value) == "address not allowed"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "http://user:pw@example.com/", "http:///x"]
)
def test_only_plain_http_and_https_urls(url):
    with pytest.raises(http.DestinationRefused):
        http.check_url(url)


def test_redirects_are_not_followed(receiver):
    answer = http.post(
        f"{receiver.url}/redirect", b"{}", {}, timeout=2, max_response_bytes=100,
        allow_private=True,
    )  # fmt: skip
    assert answer.status == 302 and not answer.ok and "not followed" in answer.error
    assert [r.path for r in receiver.wait_for(1)] == ["/redirect"]


def test_the_answer_is_read_up_to_the_cap_and_slow_receivers_time_out(receiver):
    big = http.post(
        f"{receiver.url}/big", b"{}", {}, timeout=5, max_response_bytes=1000, allow_private=True
    )
    assert big.ok and len(big.body) == 1000
    slow = http.post(
        f"{receiver.url}/slow/3", b"{}", {}, timeout=0.3, max_response_bytes=10, allow_private=True
    )
    assert slow.status is None and "timed out" in slow.error.lower()


def test_connection_refused_is_an_answer_not_an_exception():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    answer = http.post(
        f"http://127.0.0.1:{port}/", b"{}", {}, timeout=1, max_response_bytes=1, allow_private=True
    )
    assert answer.status is None and "connect" in answer.error


# --- request fields ----------------------------------------------------------------------


def create(api, **fields):
    body = {"prompt": "a lighthouse", "size": "64x64", "num_inference_steps": 2, **fields}
    return api.post("/v1/images/generations", body, format="json", HTTP_PREFER="respond-async")


def test_webhook_fields_are_validated(api, endpoint, stub_broker):
    for value, message in (
        ("ftp://example.com/x", "http"),
        ("http://10.0.0.1/hook", "private"),
        ("http://[fe80::1]/hook", "link-local"),
    ):
        response = create(api, webhook=value)
        assert response.status_code == 400, value
        error = response.json()["error"]
        assert error["param"] == "webhook" and message in error["message"]
    response = create(api, webhook="https://hooks.example.com/x", webhook_events=["done"])
    assert response.status_code == 400 and response.json()["error"]["param"].startswith(
        "webhook_events"
    )


def test_a_webhook_needs_the_organizations_signing_secret_first(api, stub_broker):
    response = create(api, webhook="https://hooks.example.com/x")
    assert response.status_code == 400
    assert "signing secret" in response.json()["error"]["message"]


def test_webhook_fields_are_recorded_and_a_plain_request_is_unchanged(api, endpoint, stub_broker):
    response = create(
        api, webhook="https://hooks.example.com/x", webhook_events=["completed", "queued"]
    )
    assert response.status_code == 202
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.params["webhook"] == "https://hooks.example.com/x"
    assert generation.params["webhook_events"] == ["queued", "completed"]
    [queued] = deliveries(generation_id=generation.id)
    assert queued.event == "queued" and queued.url == "https://hooks.example.com/x"
    body = json.loads(queued.body)
    assert body["type"] == "image.generation.queued"
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() == timedelta(0)
    assert body["timestamp"].endswith("Z")
    assert body["data"] == {**response.json(), "timings": body["data"]["timings"]}
    # No webhook and no default: no delivery, and the same answer as before.
    plain = create(api)
    assert plain.status_code == 202 and "webhook" not in plain.json()
    assert deliveries(generation_id=plain.json()["id"]) == []


def test_an_edit_takes_the_webhook_fields_as_form_fields(api, endpoint, stub_broker):
    from tests.imagefiles import gradient_png, upload

    response = api.post(
        "/v1/images/edits",
        {
            "image": upload(gradient_png((64, 64))),
            "prompt": "make it blue",
            "num_inference_steps": 2,
            "webhook": "https://hooks.example.com/edits",
            "webhook_events": "completed, queued",
        },
        format="multipart",
        HTTP_PREFER="respond-async",
    )
    assert response.status_code == 202, response.json()
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.kind == "edit" and generation.params["webhook_events"] == [
        "queued",
        "completed",
    ]
    assert [d.event for d in deliveries(generation_id=generation.id)] == ["queued"]


# --- events ------------------------------------------------------------------------------


def test_a_generation_reports_queued_started_completed(make_generation, endpoint):
    generation = make_generation(webhook="https://hooks.example.com/a")
    run_generation(generation_id=generation.id)
    rows = deliveries(generation_id=generation.id)
    assert [d.event for d in rows] == ["queued", "started", "completed"]
    completed = json.loads(rows[-1].body)
    assert completed["type"] == "image.generation.completed"
    assert completed["data"]["status"] == "succeeded" and len(completed["data"]["data"]) == 2
    assert completed["data"]["usage"]["credits_charged"] == generation.price
    assert json.loads(rows[1].body)["data"]["status"] == "running"
    assert len({d.msg_id for d in rows}) == 3


def test_events_are_filtered(make_generation, endpoint):
    generation = make_generation(webhook="https://h.example.com/", webhook_events=("completed",))
    assert deliveries() == []
    run_generation(generation_id=generation.id)
    assert [d.event for d in deliveries()] == ["completed"]


def test_failed_and_canceled_are_reported(make_generation, endpoint):
    failing = make_generation(webhook="https://h.example.com/", webhook_events=("failed",))
    generation_fail(generation_id=failing.id, code="engine_error", message="boom")
    [failed] = deliveries(generation_id=failing.id)
    assert json.loads(failed.body)["data"]["error"]["code"] == "engine_error"
    canceled = make_generation(webhook="https://h.example.com/", webhook_events=("canceled",))
    generation_cancel(generation=canceled)
    generation_cancel(generation=canceled)  # once only
    assert [d.event for d in deliveries(generation_id=canceled.id)] == ["canceled"]


def test_partial_images_are_reported_once(make_generation, endpoint):
    from generations.previews import save_preview

    generation = make_generation(webhook="https://h.example.com/", webhook_events=("partial",))
    for _ in range(2):  # a redelivered job stores (and reports) a preview once
        save_preview(generation_id=generation.id, k=0, data=b"png", output_format="png")
    [partial] = deliveries(generation_id=generation.id)
    assert json.loads(partial.body)["partial_image_index"] == 0


def test_the_organization_default_webhook_and_its_events(tenant, make_generation):
    endpoints.webhook_endpoint_set(
        organization=tenant.org, url="https://default.example.com/h", events=["completed"]
    )
    generation = make_generation()
    run_generation(generation_id=generation.id)
    [row] = deliveries(generation_id=generation.id)
    assert (row.event, row.url) == ("completed", "https://default.example.com/h")
    # A request's own webhook and events win over the default.
    own = make_generation(webhook="https://own.example.com/", webhook_events=("queued",))
    [row] = deliveries(generation_id=own.id)
    assert (row.event, row.url) == ("queued", "https://own.example.com/")


def test_the_delivery_commits_with_the_state_change_or_not_at_all(make_generation, endpoint):
    generation = make_generation(webhook="https://h.example.com/", webhook_events=("failed",))
    with pytest.raises(RuntimeError), transaction.atomic():
        generation_fail(generation_id=generation.id, code="x", message="x")
        raise RuntimeError("the transaction rolls back")
    assert Generation.objects.get(pk=generation.id).status == "queued"
    assert deliveries() == []


# --- delivery, retries, durability ---------------------------------------------------------


def verify_received(received, secret: str) -> dict:
    headers = received.headers
    assert signing.verify(
        secret,
        msg_id=headers["webhook-id"],
        timestamp=int(headers["webhook-timestamp"]),
        body=received.body,
        header=headers["webhook-signature"],
    )
    return json.loads(received.body)


def test_a_due_delivery_is_sent_signed_by_the_recovery_step(
    make_generation, tenant, receiver, private_ok
):
    """What a restarted process does: deliveries written before it died (whose first
    attempt never happened) are found and sent."""
    endpoint, secret = endpoints.webhook_endpoint_set(organization=tenant.org, url=receiver.url)
    generation = make_generation(webhook_events=("queued",))
    [row] = deliveries()
    assert row.status == "pending" and row.attempts == 0  # nobody sent it
    assert delivery.deliveries_due(inline=True) == 1
    [received] = receiver.wait_for(1)
    body = verify_received(received, secret)
    assert body["data"]["id"] == generation.id and received.headers["webhook-id"] == row.msg_id
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_status_code) == ("succeeded", 1, 204)
    assert delivery.deliveries_due(inline=True) == 0


def test_failed_attempts_back_off_exponentially_for_the_retry_window(
    make_generation, tenant, receiver, private_ok
):
    private_ok.WEBHOOK_RETRY_BASE_SECONDS = 5
    private_ok.WEBHOOK_RETRY_MAX_SECONDS = 3600
    private_ok.WEBHOOK_RETRY_WINDOW_HOURS = 24
    endpoints.webhook_endpoint_set(organization=tenant.org, url=f"{receiver.url}/status/503")
    make_generation(webhook_events=("queued",))
    [row] = deliveries()
    t = row.created_at
    gaps = []
    while True:
        assert delivery.deliveries_due(now=t, inline=True) == 1
        row.refresh_from_db()
        if row.status != "pending":
            break
        gap = (row.next_attempt_at - t).total_seconds()
        gaps.append(gap)
        # Not due a moment before its time, due at it.
        assert delivery.deliveries_due(now=row.next_attempt_at - timedelta(seconds=1)) == 0
        t = row.next_attempt_at
    assert row.status == "failed" and row.last_status_code == 503
    assert 5 <= gaps[0] <= 5.5 and 10 <= gaps[1] <= 11 and 20 <= gaps[2] <= 22
    assert max(gaps) <= 3600 * 1.1 and 3600 <= gaps[-1]
    assert t - row.created_at >= timedelta(hours=24)  # retried for at least the window
    assert row.attempts == len(gaps) + 1 < 50
    assert len(receiver.wait_for(row.attempts)) == row.attempts
    # Redeliver: due again at once, same webhook-id, a fresh window.
    delivery.delivery_redeliver(organization=tenant.org, delivery_id=row.pk)
    row.refresh_from_db()
    assert row.status == "pending" and row.retry_until > timezone.now() + timedelta(hours=23)


def test_a_sender_that_died_mid_attempt_leaves_the_delivery_due_after_its_lease(
    make_generation, tenant, receiver, private_ok
):
    endpoints.webhook_endpoint_set(organization=tenant.org, url=receiver.url)
    make_generation(webhook_events=("queued",))
    [row] = deliveries()
    now = timezone.now()
    assert delivery.delivery_claim(delivery_id=row.pk, now=now) is not None  # ...then died
    assert delivery.deliveries_due(now=now + timedelta(seconds=5), inline=True) == 0
    assert delivery.deliveries_due(now=now + timedelta(minutes=5), inline=True) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("succeeded", 2)
    # The stale attempt cannot overwrite what the newer one recorded.
    row.attempts = 1
    delivery._record(row, now=None, code=500, error="late")
    row.refresh_from_db()
    assert row.status == "succeeded"


def test_a_destination_that_becomes_private_fails_without_retries(tenant, make_generation):
    endpoints.webhook_endpoint_set(organization=tenant.org)
    # Saved while its name resolved to a public address; loopback now.
    WebhookEndpoint.objects.filter(organization=tenant.org).update(url="http://localhost:9/hook")
    make_generation(webhook_events=("queued",))
    assert delivery.deliveries_due(inline=True) == 1
    [row] = deliveries()
    assert row.status == "failed" and row.last_error.startswith("refused")


def test_finished_deliveries_are_deleted_after_the_retention(
    make_generation, endpoint, receiver, private_ok
):
    private_ok.WEBHOOK_RETENTION_DAYS = 30
    for url in (receiver.url, f"{receiver.url}/status/500", f"{receiver.url}/status/500"):
        make_generation(webhook=url, webhook_events=("queued",))
    done, failed, pending = deliveries()
    attempt(done)  # answered 204
    attempt(failed, at=failed.retry_until)  # answered 500 at the end of its retry window
    attempt(pending)  # answered 500, retried later
    assert [d.status for d in deliveries()] == ["succeeded", "failed", "pending"]
    later = timezone.now() + timedelta(days=31)
    assert delivery.deliveries_purge(now=timezone.now()) == 0
    assert delivery.deliveries_purge(now=later) == 2
    assert deliveries() == [pending]  # still being retried: kept


# --- secrets -------------------------------------------------------------------------------


def test_rotation_signs_with_both_secrets_during_the_grace_period(
    tenant, make_generation, receiver, private_ok
):
    endpoint, old = endpoints.webhook_endpoint_set(organization=tenant.org, url=receiver.url)
    assert (
        old and endpoints.webhook_endpoint_set(organization=tenant.org, url=receiver.url)[1] is None
    )
    endpoint, new = endpoints.webhook_secret_rotate(organization=tenant.org, grace_seconds=3600)
    assert new != old and endpoint.signing_secrets() == [new, old]
    make_generation(webhook_events=("queued",))
    delivery.deliveries_due(inline=True)
    [received] = receiver.wait_for(1)
    assert len(received.headers["webhook-signature"].split()) == 2
    verify_received(received, old)
    verify_received(received, new)
    # After the grace period only the new secret signs; rotating again ends a grace now.
    assert endpoint.signing_secrets(timezone.now() + timedelta(hours=2)) == [new]
    endpoint, newest = endpoints.webhook_secret_rotate(organization=tenant.org, grace_seconds=0)
    assert endpoint.signing_secrets(timezone.now() + timedelta(seconds=1)) == [newest]
    with pytest.raises(Exception, match="grace_seconds"):
        endpoints.webhook_secret_rotate(organization=tenant.org, grace_seconds=-1)


# --- the management API ------------------------------------------------------------------


def test_management_api_sets_the_default_rotates_and_lists(tenant, make_generation):
    client = tenant.manage_client()
    assert client.get("/v1/webhook").json()["secret_redacted"] is None
    first = client.put(
        "/v1/webhook", {"url": "https://hooks.example.com/a", "events": ["completed"]},
        format="json",
    )  # fmt: skip
    assert first.status_code == 201 and first.json()["secret"].startswith("whsec_")
    again = client.patch("/v1/webhook", {"events": []}, format="json")
    assert again.status_code == 200 and again.json()["secret"] is None
    assert again.json()["url"] == "https://hooks.example.com/a" and again.json()["events"] == []
    shown = client.get("/v1/webhook").json()
    assert shown["secret"] is None and first.json()["secret"] not in json.dumps(shown)
    rotated = client.post("/v1/webhook/rotate", {"grace_seconds": 60}, format="json").json()
    assert rotated["secret"] not in (None, first.json()["secret"])
    assert rotated["previous_expires_at"]
    bad = client.put("/v1/webhook", {"url": "http://192.168.0.1/"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "url"
    assert client.put("/v1/webhook", {"nope": 1}, format="json").status_code == 400

    # A name that resolves to loopback is refused at save; one whose DNS turned to
    # loopback after it was saved is refused at every attempt, which fails at once.
    refused = client.put("/v1/webhook", {"url": "http://localhost:9/hook"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "url"
    WebhookEndpoint.objects.filter(organization=tenant.org).update(url="http://localhost:9/hook")
    for _ in range(3):
        make_generation()
    assert delivery.deliveries_due(inline=True) == 3
    listed = client.get("/v1/webhook/deliveries?limit=2").json()
    assert [d["event"] for d in listed["data"]] == ["queued", "queued"] and listed["has_more"]
    assert [d["status"] for d in listed["data"]] == ["failed", "failed"]
    rest = client.get(f"/v1/webhook/deliveries?before={listed['next_before']}").json()
    assert len(rest["data"]) == 1 and not rest["has_more"]
    delivery_id = rest["data"][0]["id"]
    assert rest["data"][0]["last_error"] == "refused: address not allowed"
    assert client.get("/v1/webhook/deliveries?status=pending").json()["data"] == []
    redone = client.post(f"/v1/webhook/deliveries/{delivery_id}/redeliver")
    assert redone.status_code == 200 and redone.json()["status"] == "pending"
    [pending] = client.get("/v1/webhook/deliveries?status=pending").json()["data"]
    assert pending["id"] == delivery_id and pending["msg_id"] == rest["data"][0]["msg_id"]
    assert client.get("/v1/webhook/deliveries?status=bogus").status_code == 400
    # Rotate and redeliver are actions: nothing else is answered there.
    assert client.put("/v1/webhook/rotate", {"url": ""}, format="json").status_code == 405
    assert client.get(f"/v1/webhook/deliveries/{delivery_id}/redeliver").status_code == 405


def test_members_read_but_do_not_change_webhooks_and_tenants_are_apart(
    tenant, other_tenant, make_generation
):
    member = tenant.member(Membership.Role.MEMBER)
    client = tenant.manage_client(member)
    assert client.get("/v1/webhook").status_code == 200
    assert client.put("/v1/webhook", {"url": ""}, format="json").status_code == 403
    assert client.post("/v1/webhook/rotate", {}, format="json").status_code == 403
    endpoints.webhook_endpoint_set(organization=tenant.org, url="https://a.example.com/")
    make_generation()
    [row] = deliveries()
    other = other_tenant.manage_client()
    assert other.get("/v1/webhook/deliveries").json()["data"] == []
    assert other.post(f"/v1/webhook/deliveries/{row.pk}/redeliver").status_code == 404


def test_openapi_documents_the_webhook_api_and_fields(client):
    schema = client.get("/openapi.json").json()
    for path in ("/v1/webhook", "/v1/webhook/rotate", "/v1/webhook/deliveries"):
        assert path in schema["paths"], path
    request = json.dumps(schema["components"]["schemas"])
    assert "webhook_events" in request


# --- the page ------------------------------------------------------------------------------


def test_the_page_sets_the_default_reveals_the_secret_once_and_redelivers(
    tenant, make_generation, receiver, settings
):
    from django.test import Client

    browser = Client()
    browser.force_login(tenant.user)
    page = browser.get("/webhooks/")
    assert page.status_code == 200 and b"No deliveries yet" in page.content
    saved = browser.post(
        "/webhooks/", {"url": "https://hooks.example.com/p", "events": ["queued", "completed"]}
    )
    endpoint = endpoints.webhook_endpoint_get(organization_id=tenant.org.pk)
    assert saved.status_code == 200 and endpoint.secret.encode() in saved.content
    assert saved["Cache-Control"] == "no-store"
    assert endpoint.url == "https://hooks.example.com/p"
    assert endpoint.events == ["queued", "completed"]
    later = browser.get("/webhooks/")
    assert endpoint.secret.encode() not in later.content
    assert signing.redacted(endpoint.secret).encode() in later.content
    bad = browser.post("/webhooks/", {"url": "http://127.0.0.1/x"})
    assert bad.status_code == 400 and b"loopback" in bad.content

    rotated = browser.post("/webhooks/rotate/", {"grace_seconds": 3600})
    endpoint.refresh_from_db()
    assert endpoint.secret.encode() in rotated.content and b"signs too until" in rotated.content

    # A generation whose own webhook answers 500, tried until its retry window ends.
    make_generation(webhook=f"{receiver.url}/status/500", webhook_events=("queued",))
    [row] = deliveries()
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver listens on loopback
    attempt(row)
    row = attempt(row, at=row.retry_until)
    assert (row.status, row.attempts, row.last_status_code) == ("failed", 2, 500)
    log = browser.get("/webhooks/").content.decode()
    assert row.generation_id in log and "failed" in log and "500" in log and "Redeliver" in log
    browser.post(f"/webhooks/deliveries/{row.pk}/redeliver/")
    row.refresh_from_db()
    assert row.status == "pending"

    member = tenant.member(Membership.Role.MEMBER)
    browser.force_login(member)
    as_member = browser.get("/webhooks/").content.decode()
    assert "Only owners and admins" in as_member and "Redeliver" not in as_member
    assert browser.post("/webhooks/", {"url": ""}).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.url == "https://hooks.example.com/p"


def test_the_readme_verification_snippet_verifies_a_real_delivery(
    make_generation, tenant, receiver, private_ok
):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Webhooks") :]
    start = section.index("```python\n") + len("```python\n")
    snippet = section[start : section.index("```\n", start)]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - our own README
    verify_webhook = namespace["verify_webhook"]

    _, secret = endpoints.webhook_endpoint_set(organization=tenant.org, url=receiver.url)
    generation = make_generation(webhook_events=("queued",))
    delivery.deliveries_due(inline=True)
    [received] = receiver.wait_for(1)
    event = verify_webhook(secret, received.headers, received.body)
    assert event["data"]["id"] == generation.id
    with pytest.raises(ValueError):
        verify_webhook(secret, received.headers, received.body + b" ")
    with pytest.raises(ValueError):
        verify_webhook(signing.new_secret(), received.headers, received.body)


def test_staff_see_every_delivery_in_the_admin(tenant, make_generation):
    from django.test import Client

    from accounts.models import User

    endpoints.webhook_endpoint_set(organization=tenant.org, url="https://h.example.com/")
    generation = make_generation()
    staff = Client()
    staff.force_login(User.objects.create_superuser(email="staff@example.com", password="x"))
    page = staff.get("/admin/accounts/webhookdelivery/")
    assert page.status_code == 200 and generation.id in page.content.decode()


# --- issue 23: URLs judged once, the same way; secrets encrypted at rest ---------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/hook",
        "http://127.1/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "http://0177.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://10.1.2.3:8080/hook",
    ],
)
def test_every_spelling_of_a_private_address_is_refused_at_save(tenant, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused = tenant.manage_client().put("/v1/webhook", {"url": url}, format="json")
    assert refused.status_code == 400, url
    error = refused.json()["error"]
    assert error["param"] == "url" and "address not allowed" in error["message"]
    assert "127.0.0.1" not in error["message"]
    # The page's form says the same.
    from tests.accounts.test_pages import browser, page_text

    page = browser(tenant.user).post("/webhooks/", {"url": url}, follow=True)
    assert "address not allowed" in page_text(page)
    assert not WebhookEndpoint.objects.filter(url=url).exists()


def test_a_generation_naming_a_private_webhook_is_refused(tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    endpoints.webhook_endpoint_set(organization=tenant.org)
    body = {"prompt": "x", "webhook": "http://2130706433/"}
    refused = tenant.client().post("/v1/images/generations", body, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "webhook"


def test_allow_private_still_allows_them(tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    saved = tenant.manage_client().put("/v1/webhook", {"url": "http://127.1:9/"}, format="json")
    assert saved.status_code == 201


def test_signing_secrets_are_encrypted_at_rest_and_rotate_keys(tenant, settings):
    from cryptography.fernet import Fernet

    from accounts.webhooks import secrets

    endpoint, secret = endpoints.webhook_endpoint_set(organization=tenant.org)
    stored = WebhookEndpoint.objects.filter(pk=endpoint.pk).values().get()
    assert secret not in json.dumps(stored, default=str)
    assert stored["secret_hint"] == f"whsec_…{secret[-4:]}"
    # A key set later: the derived one still opens the old rows; rotation re-encrypts.
    new_key = Fernet.generate_key().decode()
    settings.SECRET_ENCRYPTION_KEYS = [new_key]
    reloaded = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert reloaded.secret == secret
    rotated = secrets.reencrypt(reloaded.secret_encrypted)
    assert Fernet(new_key.encode()).decrypt(rotated.encode()).decode() == secret
    settings.SECRET_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.SECRET_KEY = "another"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        secrets.decrypt(rotated)


def test_the_rotation_command_reencrypts_under_the_first_key(tenant, settings):
    import io

    from cryptography.fernet import Fernet
    from django.core.management import call_command

    _, secret = endpoints.webhook_endpoint_set(organization=tenant.org)
    new_key = Fernet.generate_key().decode()
    settings.SECRET_ENCRYPTION_KEYS = [new_key]
    call_command("encrypt_webhook_secrets", stdout=io.StringIO())
    stored = WebhookEndpoint.objects.get(organization=tenant.org).secret_encrypted
    assert Fernet(new_key.encode()).decrypt(stored.encode()).decode() == secret
