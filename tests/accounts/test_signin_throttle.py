"""Sign-in throttling that cannot be sidestepped or turned against the user (issue 23,
findings 2-4): the account is counted by its normalised address, per client address,
and every door into authenticate() (the sign-in page, /admin/login/) is throttled."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User

PASSWORD = "correct horse battery"


@pytest.fixture
def vic(db):
    cache.clear()
    return User.objects.create_user(email="vic@v.test", password=PASSWORD)


def _sign_in(client, username, password, address, path="/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_every_spelling_of_an_address_counts_as_one(vic):
    client = Client()
    for _ in range(9):
        assert _sign_in(client, "vic@v.test", "wrong", "203.0.113.5").status_code == 200
    # The tenth failure locks the account out at this address.
    assert _sign_in(client, "vic@v.test", "wrong", "203.0.113.5").status_code == 429
    for spelling in ("ｖic@v.test", "vic＠v.test", "VIC@V.TEST", " vic@v.test"):
        refused = _sign_in(client, spelling, PASSWORD, "203.0.113.5")
        assert refused.status_code == 429, spelling
        assert b"Too many attempts" in refused.content
        assert int(refused["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


def test_an_attacker_cannot_lock_the_user_out_from_their_own_address(vic):
    attacker = Client()
    for _ in range(12):
        _sign_in(attacker, "vic@v.test", "wrong", "198.51.100.66")
    assert _sign_in(attacker, "vic@v.test", PASSWORD, "198.51.100.66").status_code == 429
    user = Client()
    signed_in = _sign_in(user, "vic@v.test", PASSWORD, "203.0.113.5")
    assert signed_in.status_code == 302 and user.session["_auth_user_id"] == str(vic.pk)


def test_spraying_many_accounts_from_one_address_is_limited(vic, settings):
    client = Client()
    for i in range(30):
        _sign_in(client, f"u{i}@x.example", "wrong", "198.51.100.7")
    assert _sign_in(client, "vic@v.test", PASSWORD, "198.51.100.7").status_code == 429
    assert _sign_in(client, "vic@v.test", PASSWORD, "198.51.100.8").status_code == 302


def test_admin_login_goes_through_the_same_limiter(db):
    cache.clear()
    User.objects.create_superuser(email="root@v.test", password=PASSWORD)
    client = Client()
    for _ in range(9):
        response = _sign_in(client, "root@v.test", "wrong", "198.51.100.9", "/admin/login/")
        assert response.status_code == 200
    for password in ("wrong", PASSWORD):
        refused = _sign_in(client, "root@v.test", password, "198.51.100.9", "/admin/login/")
        assert refused.status_code == 429 and b"Too many attempts" in refused.content
    assert "_auth_user_id" not in client.session
    other = _sign_in(Client(), "root@v.test", PASSWORD, "203.0.113.9", "/admin/login/")
    assert other.status_code == 302


def test_a_success_clears_the_failures_of_that_address(vic):
    client = Client()
    for _ in range(9):
        _sign_in(client, "vic@v.test", "wrong", "203.0.113.5")
    assert _sign_in(client, "vic@v.test", PASSWORD, "203.0.113.5").status_code == 302
    client.logout()
    for _ in range(9):
        assert _sign_in(client, "vic@v.test", "wrong", "203.0.113.5").status_code == 200
