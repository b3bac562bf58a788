"""Every response header and JSON field the API sends is documented in the README.

Real requests go through the Django test client (a sync generation on the embedded
worker, an async one, a queued one, a stream, errors, the list, the models, the
management and usage APIs, a webhook delivery); every header that is not a standard HTTP
header, and every JSON key at any depth, must appear in README.md inside backticks
(`name`, or as a word of a code span such as `usage.credits_charged`). Something new and
undocumented fails here with its name and where it was seen.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
from django.test import override_settings

from accounts.webhooks import delivery as webhook_delivery
from accounts.webhooks import endpoints
from tests.conftest import bearer_client
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parent.parent / "README.md"
URL = "/v1/images/generations"

# Standard HTTP headers (and Django's security headers): not ours to document.
STANDARD_RESPONSE_HEADERS = {
    "allow",
    "cache-control",
    "content-disposition",
    "content-language",
    "content-length",
    "content-security-policy",
    "content-type",
    "cross-origin-opener-policy",
    "date",
    "etag",
    "expires",
    "last-modified",
    "referrer-policy",
    "server",
    "set-cookie",
    "strict-transport-security",
    "vary",
    "x-content-type-options",
    "x-frame-options",
}
STANDARD_REQUEST_HEADERS = {
    "accept",
    "accept-encoding",
    "connection",
    "content-length",
    "content-type",
    "host",
    "user-agent",
}


def documented_names(readme: str) -> set[str]:
    """The words of the README's inline code spans; fenced examples and prose do not
    count as documentation."""
    text = re.sub(r"^```.*?^```", "", readme, flags=re.S | re.M)
    names: set[str] = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        names.update(re.findall(r"[A-Za-z0-9_][A-Za-z0-9_-]*", span))
    return names


class Observed:
    """Header names and JSON keys seen, each with the first place it was seen."""

    def __init__(self):
        self.headers: dict[str, str] = {}
        self.fields: dict[str, str] = {}

    def response(self, where: str, response, *, body: bool = True) -> None:
        for name in response.headers:
            if name.lower() not in STANDARD_RESPONSE_HEADERS:
                self.headers.setdefault(name.lower(), where)
        if body:
            assert response["Content-Type"].startswith("application/json"), where
            self.json(where, response.json())

    def json(self, where: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self.fields.setdefault(key, where)
                self.json(f"{where} .{key}", item)
        elif isinstance(value, list):
            for item in value:
                self.json(where, item)


def drive_image_api(seen: Observed, api, tenant, receiver: Receiver) -> str:
    """Generations on the embedded worker: sync (b64 and url), an idempotent replay, a
    webhook delivery, GET, the list, the models, errors. Returns a generation id."""
    endpoints.webhook_endpoint_set(organization=tenant.org)  # the signing secret
    body = {
        "prompt": "documented",
        "size": "64x64",
        "seed": 7,
        "webhook": f"{receiver.url}/hook",
        "webhook_events": ["completed"],
    }
    sync = api.post(URL, body, format="json")
    assert sync.status_code == 200, sync.content
    seen.response("POST generations (sync)", sync)
    first = dict(body, response_format="url", webhook_events=["queued"])
    linked = api.post(URL, first, format="json", HTTP_IDEMPOTENCY_KEY="docs-1")
    again = api.post(URL, first, format="json", HTTP_IDEMPOTENCY_KEY="docs-1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    seen.response("POST generations (url)", linked)
    seen.response("POST generations (Idempotency-Key replayed)", again)

    received = receiver.wait_for(2)
    assert webhook_delivery.sender.wait_idle(10)
    assert len(received) >= 2, "the webhook deliveries did not arrive"
    for delivery in received:
        for name in delivery.headers:
            if name not in STANDARD_REQUEST_HEADERS:
                seen.headers.setdefault(name, "webhook delivery (request header)")
        seen.json("webhook delivery body", json.loads(delivery.body))

    generation_id = sync.json()["id"]
    seen.response("GET generation", api.get(f"{URL}/{generation_id}"))
    listed = api.get(URL, {"limit": 1})
    assert listed.json()["has_more"] is True
    seen.response("GET generations (list)", listed)
    seen.response("GET /v1/models", api.get("/v1/models"))
    seen.response("GET /v1/models/demo-sd", api.get("/v1/models/demo-sd"))

    invalid = api.post(URL, {"prompt": "x", "colour": "red"}, format="json")
    assert invalid.status_code == 400
    seen.response("error envelope (400)", invalid)
    unknown = bearer_client("ihk_notakey").get("/v1/models")
    assert unknown.status_code == 401
    seen.response("error envelope (401)", unknown)
    seen.response("error envelope (404)", api.get(f"{URL}/gen_nothere"))
    return generation_id


def drive_queue(seen: Observed, api, tenant) -> None:
    """With no worker consuming: async, queued, a stream, a sync wait that runs out,
    cancel, and a key past its rpm limit."""
    from generations.worker import embedded

    with embedded.paused() as broker:
        broker.flush_all()
        queued = api.post(URL, {"prompt": "later"}, format="json", HTTP_PREFER="respond-async")
        assert queued.status_code == 202 and "Location" in queued
        seen.response("POST generations (Prefer: respond-async)", queued)
        polled = api.get(f"{URL}/{queued.json()['id']}")
        assert "queue_position" in polled.json()
        seen.response("GET generation (queued)", polled)

        stream = api.post(URL, {"prompt": "s", "stream": True}, format="json")
        assert stream["Content-Type"] == "text/event-stream"
        seen.response("POST generations (stream)", stream, body=False)
        stream.close()

        timed_out = api.post(URL, {"prompt": "wait"}, format="json", HTTP_PREFER="wait=1")
        assert timed_out.status_code == 504
        seen.response("error envelope (504, sync wait ran out)", timed_out)

        canceled = api.post(f"{URL}/{queued.json()['id']}/cancel")
        seen.response("POST cancel", canceled)
        seen.response("GET generation (canceled)", api.get(f"{URL}/{queued.json()['id']}"))

        _, secret = tenant.new_key(limits={"rpm_limit": 1})
        limited = bearer_client(secret)
        for _ in range(3):  # a new minute may start between two requests
            answer = limited.post(URL, {"prompt": "r"}, format="json", HTTP_PREFER="respond-async")
            seen.response(f"POST generations (rpm limit, {answer.status_code})", answer)
            if answer.status_code == 429:
                break
        assert answer.status_code == 429 and "Retry-After" in answer
        broker.flush_all()


def drive_management(seen: Observed, api, tenant) -> None:
    manage = tenant.manage_client()
    seen.response("GET /v1/keys", manage.get("/v1/keys"))
    new = {"name": "docs", "limits": {"rpm_limit": 5}}
    created = manage.post("/v1/keys", new, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    replayed = manage.post("/v1/keys", new, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert (created.status_code, replayed.status_code) == (201, 200)
    seen.response("POST /v1/keys", created)
    seen.response("POST /v1/keys (Idempotency-Key replayed)", replayed)
    seen.response(
        "POST /v1/keys/{id}/rotate", manage.post(f"/v1/keys/{created.json()['id']}/rotate")
    )
    seen.response("GET /v1/organization", manage.get("/v1/organization"))
    seen.response("GET /v1/organization/members", manage.get("/v1/organization/members"))
    seen.response("GET /v1/webhook", manage.get("/v1/webhook"))
    deliveries = manage.get("/v1/webhook/deliveries")
    assert deliveries.json()["data"], "no delivery to show"
    seen.response("GET /v1/webhook/deliveries", deliveries)
    seen.response("GET /v1/credits", api.get("/v1/credits"))
    usage = api.get("/v1/usage", {"group_by": "model,key,user"})
    assert usage.json()["data"], "no usage row to show"
    seen.response("GET /v1/usage", usage)
    # LoRA adapters: upload, list, get, a generation naming one, usage by adapter set.
    from tests.adapters import demo_bytes, upload

    uploaded = upload(manage, demo_bytes("demo-sd"), name="docs")
    assert uploaded.status_code == 201, uploaded.content
    seen.response("POST /v1/adapters", uploaded)
    seen.response("GET /v1/adapters", api.get("/v1/adapters"))
    seen.response("GET /v1/adapters/{id}", api.get(f"/v1/adapters/{uploaded.json()['id']}"))
    lora = {"prompt": "p", "size": "64x64", "loras": [{"id": uploaded.json()["id"]}]}
    seen.response("POST generations (loras)", api.post(URL, lora, format="json"))
    seen.response("GET /v1/usage (adapters)", api.get("/v1/usage", {"group_by": "adapters"}))
    seen.response(
        "DELETE /v1/adapters/{id}", manage.delete(f"/v1/adapters/{uploaded.json()['id']}")
    )
    seen.response("GET /healthz", api.get("/healthz"))
    seen.response("GET /readyz", api.get("/readyz"))


@override_settings(WEBHOOK_ALLOW_PRIVATE=True)
def test_every_header_and_field_the_api_sends_is_in_the_readme(api, tenant):
    seen = Observed()
    with Receiver() as receiver:
        drive_image_api(seen, api, tenant, receiver)
    drive_queue(seen, api, tenant)
    drive_management(seen, api, tenant)

    names = documented_names(README.read_text())
    lowered = {name.lower() for name in names}
    missing = defaultdict(list)
    for header, where in sorted(seen.headers.items()):
        if header not in lowered:
            missing["headers"].append(f"{header}  (seen in {where})")
    for field, where in sorted(seen.fields.items()):
        if field not in names:
            missing["fields"].append(f"{field}  (seen in {where})")
    assert not missing, (
        "Undocumented in README.md (add each, in backticks, to 'Headers' or 'Fields we "
        "add'):\n"
        + "\n".join(f"{kind}: {line}" for kind, lines in missing.items() for line in lines)
    )
    # The guard saw what it is there to guard.
    assert {
        "x-request-id",
        "x-generation-id",
        "x-ratelimit-limit-requests",
        "idempotent-replayed",
        "location",
        "retry-after",
        "webhook-signature",
    } <= set(seen.headers)
    assert {
        "device_wait",
        "queue_position",
        "credits_charged",
        "generation_id",
        "cancel_requested",
        "max_prompt_chars",
        "avg_latency_ms",
        "msg_id",
    } <= set(seen.fields)


def test_only_code_spans_outside_examples_count_as_documentation():
    readme = (
        "The `timings.device_wait` field and the `x-request-id: req_1` header.\n"
        "queue_position in prose, or only in an example:\n"
        '```json\n{"estimated_start": 1, "note": `price`}\n```\n'
    )
    names = documented_names(readme)
    assert {"timings", "device_wait", "x-request-id", "req_1"} <= names
    assert not {"queue_position", "estimated_start", "price"} & names
    # ... and the real README, without one entry, is caught.
    real = README.read_text()
    assert "device_wait" in documented_names(real)
    stripped = re.sub(r"`[^`\n]*\bdevice_wait\b[^`\n]*`", "", real)
    assert "device_wait" not in documented_names(stripped)
