"""Webhooks end to end: the official `openai` client against the live server (embedded
worker), a real receiver on 127.0.0.1 that checks every delivery's signature with the
Standard Webhooks algorithm, and a delivery written while no sender ran (a process that
died) found and sent by the recovery loop."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import openai
import pytest

from accounts.webhooks import delivery as webhook_delivery
from accounts.webhooks import endpoints
from accounts.webhooks.models import WebhookDelivery
from tests.conftest import Tenant
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def standard_webhooks_verify(secret: str, headers: dict, body: bytes) -> dict:
    """The reference algorithm, written out: base64(HMAC-SHA256(key, id.timestamp.body))
    against each `v1,` signature of the header; the timestamp must be recent."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert abs(time.time() - int(headers["webhook-timestamp"])) < 300
    signatures = [s.split(",", 1)[1] for s in headers["webhook-signature"].split()]
    assert any(hmac.compare_digest(expected, s) for s in signatures), headers
    return json.loads(body)


def test_openai_client_with_a_webhook_gets_signed_events(live_server, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    tenant = Tenant("hooked")
    _, secret = endpoints.webhook_endpoint_set(organization=tenant.org)
    with Receiver() as receiver:
        with openai.OpenAI(
            base_url=f"{live_server.url}/v1", api_key=tenant.secret, max_retries=0, timeout=120
        ) as client:
            result = client.images.generate(
                model="demo-sd",
                prompt="a lighthouse",
                size="64x64",
                n=1,
                extra_body={
                    "num_inference_steps": 2,
                    "webhook": f"{receiver.url}/hooks/imagehub",
                    "webhook_events": ["queued", "started", "completed"],
                },
            )
            plain = client.images.generate(  # no webhook: nothing is sent
                model="demo-sd", prompt="x", size="64x64", extra_body={"num_inference_steps": 1}
            )
        assert result.data[0].b64_json and plain.data[0].b64_json
        generation_id = result.model_extra["id"]
        received = receiver.wait_for(3)
        time.sleep(0.3)
        assert len(receiver.received) == 3
    bodies = [standard_webhooks_verify(secret, r.headers, r.body) for r in received]
    assert {r.path for r in received} == {"/hooks/imagehub"}
    assert sorted(b["type"] for b in bodies) == [
        "image.generation.completed",
        "image.generation.queued",
        "image.generation.started",
    ]
    assert {b["data"]["id"] for b in bodies} == {generation_id}
    completed = next(b for b in bodies if b["type"].endswith("completed"))
    assert completed["data"]["status"] == "succeeded"
    assert completed["data"]["data"][0]["b64_json"] == result.data[0].b64_json
    rows = WebhookDelivery.objects.filter(generation_id=generation_id)
    assert {(r.status, r.attempts, r.last_status_code) for r in rows} == {("succeeded", 1, 204)}


def test_a_delivery_left_by_a_dead_process_is_sent_by_the_recovery_loop(
    settings, monkeypatch, tenant, make_generation
):
    """The row commits with the state change; its process died before the first attempt
    (no sender ever saw it). The recovery loop of any worker sends it."""
    from generations import recovery

    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver() as receiver:
        _, secret = endpoints.webhook_endpoint_set(
            organization=tenant.org, url=receiver.url, events=["queued"]
        )
        # The process dies between the commit and the first attempt: no sender hears of
        # the row that generation_create recorded with the job.
        with monkeypatch.context() as dead:
            dead.setattr(webhook_delivery.sender, "submit_new", lambda delivery: None)
            generation = make_generation(n=1)
        row = WebhookDelivery.objects.get(generation_id=generation.id, event="queued")
        assert row.attempts == 0 and not receiver.received
        recovery.recover()
        [received] = receiver.wait_for(1, timeout=10)
        assert webhook_delivery.sender.wait_idle(10)
    standard_webhooks_verify(secret, received.headers, received.body)
    assert received.headers["webhook-id"] == row.msg_id
    assert json.loads(received.body)["data"]["id"] == generation.id
    row.refresh_from_db()
    assert row.status == "succeeded"
