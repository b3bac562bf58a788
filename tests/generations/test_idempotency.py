"""Idempotency-Key: a client that retries a create never pays twice, and a key reused for
a different request is refused, naming the header."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from imagefiles import gradient_png, upload

from accounts.models import CreditEntry, Organization
from generations.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"
BODY = {"prompt": "a red kite", "size": "64x64", "seed": 5}


def post(client, body=BODY, key="retry-1", **headers):
    return client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **headers)


def entries(tenant) -> list[str]:
    return list(
        CreditEntry.objects.filter(organization=tenant.org)
        .exclude(kind="topup")
        .order_by("pk")
        .values_list("kind", flat=True)
    )


def test_a_retry_returns_the_same_generation_and_charges_once(tenant, api):
    first = post(api)
    assert first.status_code == 200, first.content
    again = post(api, {"size": "64x64", "seed": 5, "prompt": "a red kite"})  # key order
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] == again["x-generation-id"]
    assert again.json()["data"] == first.json()["data"]
    assert Generation.objects.filter(organization=tenant.org).count() == 1
    assert entries(tenant) == ["hold", "capture"]


def test_a_retry_of_an_async_request_while_it_runs_gets_the_same_job(tenant, api, stub_broker):
    first = post(api, HTTP_PREFER="respond-async")
    again = post(api, HTTP_PREFER="respond-async")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "queued"
    assert entries(tenant) == ["hold"]


def test_the_same_key_with_another_request_is_a_422_naming_the_header(tenant, api):
    assert post(api).status_code == 200
    response = post(api, {**BODY, "seed": 6})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "Idempotency-Key" and error["code"] == "idempotency_key_reused"
    assert entries(tenant) == ["hold", "capture"]


def test_keys_belong_to_their_organization(tenant, other_tenant, api):
    mine = post(api)
    theirs = post(other_tenant.client())
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve"])
def test_a_malformed_key_is_a_400(api, key):
    response = post(api, key=key)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"


def test_concurrent_retries_with_one_key_create_one_generation(tenant, stub_broker):
    results = []

    def send():
        try:
            results.append(post(tenant.client(), HTTP_PREFER="respond-async"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status_code for r in results} == {202}
    assert len({r.json()["id"] for r in results}) == 1
    assert entries(tenant) == ["hold"]
    org = Organization.objects.get(pk=tenant.org.pk)
    assert org.credits_held == Generation.objects.get(organization=tenant.org).price


def test_an_edit_retried_with_the_same_upload_is_replayed_and_another_upload_is_not(
    tenant, api, stub_broker
):
    def edit(image: bytes):
        return api.post(
            "/v1/images/edits",
            {"image": upload(image), "prompt": "blue", "size": "64x64"},
            format="multipart",
            HTTP_IDEMPOTENCY_KEY="edit-1",
            HTTP_PREFER="respond-async",
        )

    first, again = edit(gradient_png((64, 64))), edit(gradient_png((64, 64)))
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert edit(gradient_png((96, 64))).status_code == 422
    assert entries(tenant) == ["hold"]
