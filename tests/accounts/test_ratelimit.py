"""Per-key request rates and concurrent generations, with OpenAI's headers."""

import time

import pytest

from accounts.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"
FAST = {"prompt": "r", "size": "64x64", "num_inference_steps": 1}


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """Keep every request of a test inside one one-minute window."""
    now = (time.time() // 60) * 60 + 5
    monkeypatch.setattr("accounts.ratelimit.time.time", lambda: now)


def post(client, body=FAST):
    return client.post(URL, body, format="json", HTTP_PREFER="respond-async")


def test_requests_per_minute_with_headers(tenant):
    from tests.conftest import bearer_client

    _, secret = tenant.new_key(limits={"rpm_limit": 3})
    client = bearer_client(secret)
    for remaining in (2, 1, 0):
        response = post(client)
        assert response.status_code == 202
        assert response["x-ratelimit-limit-requests"] == "3"
        assert response["x-ratelimit-remaining-requests"] == str(remaining)
        assert response["x-ratelimit-reset-requests"] == "55s"
    refused = post(client)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "3 requests per minute" in error["message"]
    assert refused["Retry-After"] == "55"
    assert refused["x-ratelimit-remaining-requests"] == "0"


def test_organization_default_applies_to_keys_without_a_limit(tenant, api):
    Organization.objects.filter(pk=tenant.org.pk).update(default_rpm_limit=2)
    assert [post(api).status_code for _ in range(3)] == [202, 202, 429]


def test_no_limit_no_headers(api):
    response = post(api)
    assert response.status_code == 202
    assert "x-ratelimit-limit-requests" not in response


def test_max_concurrent_generations(tenant, monkeypatch):
    from generations.engine.pipelines import Engine
    from tests.conftest import bearer_client

    real_run = Engine.run
    monkeypatch.setattr(
        Engine, "run", lambda self, *a, **k: (time.sleep(1), real_run(self, *a, **k))[1]
    )
    _, secret = tenant.new_key(limits={"max_concurrent": 1})
    client = bearer_client(secret)
    first = post(client)
    assert first.status_code == 202
    second = post(client)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    assert "in flight" in second.json()["error"]["message"] and second["Retry-After"] == "1"
    deadline = time.monotonic() + 30
    while client.get(f"{URL}/{first.json()['id']}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert post(client).status_code == 202


def test_the_fixed_window_counter_counts_per_counter_and_survives_an_expiry(monkeypatch):
    """window_count, the one counter behind the per-key limit and the sign-in throttle."""
    import uuid

    from django.core.cache import cache

    from accounts.ratelimit import window_count

    a, b = f"test:{uuid.uuid4().hex}:a", f"test:{uuid.uuid4().hex}:b"
    assert [window_count(a, window_seconds=60) for _ in range(3)] == [1, 2, 3]
    assert window_count(b, window_seconds=60) == 1
    assert cache.get(a) == 3

    # The entry expires between the add and the incr: the count starts again at 1.
    c = f"test:{uuid.uuid4().hex}:c"
    real_add, expired = cache.add, []

    def add_then_expire(key, value, timeout=None):
        added = real_add(key, value, timeout=timeout)
        if not expired:
            expired.append(key)
            cache.delete(key)
        return added

    monkeypatch.setattr(cache, "add", add_then_expire)
    assert window_count(c, window_seconds=60) == 1
    assert expired == [c] and cache.get(c) == 1
    assert window_count(c, window_seconds=60) == 2
