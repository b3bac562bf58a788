"""Shared fixtures: tenants with keys, an API client, and the in-process worker."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.servers.basehttp import WSGIServer
from rest_framework.test import APIClient

from accounts.ledger import credits_top_up
from accounts.models import APIKey, Membership
from accounts.services import api_key_create, organization_create, user_get_or_create

# pytest-django's live_server listens with Django's backlog of 10 connections; tests that
# fire a burst of concurrent requests need a production-like one.
WSGIServer.request_queue_size = 1024


@pytest.fixture(scope="session", autouse=True)
def demo_models(django_db_blocker):
    """The demo models, built once into the data dir (make test builds them first), and
    their demo adapters' files (tests that use them record them: tests/adapters.py)."""
    call_command("build_demo_models", verbosity=0, register=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Before a test's fixtures go (the database flush among them), let the in-process
    worker finish the jobs the test sent: a job claimed or settled while the flush
    truncates the tables deadlocks with it. Bounded, so a stuck job cannot hang the run."""
    from generations.worker import embedded

    deadline = time.monotonic() + 30
    while embedded.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield


def pytest_configure(config):
    from django.conf import settings

    Path(settings.TEST_OUTPUT_DIR).mkdir(parents=True, exist_ok=True)


def pytest_unconfigure(config):
    """Leave nothing behind: the run's temporary output folder goes once the test
    databases are dropped (a SQLite test database lives in it)."""
    from django.conf import settings

    if settings.configured and getattr(settings, "TEST_OUTPUT_IS_TEMPORARY", False):
        shutil.rmtree(settings.TEST_OUTPUT_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_model_reports():
    """The in-process worker remembers what it reported (to write only changes); each
    test starts with an empty database, so it must report afresh."""
    from generations.worker.probe import reporter

    reporter.forget()


@pytest.fixture(scope="session", autouse=True)
def _stop_local_worker(django_db_setup):
    """Stop the embedded worker's threads (and their connections) before the test
    databases are dropped."""
    yield
    from generations.worker import embedded

    embedded.stop()


@pytest.fixture
def stub_broker():
    """The in-process Dramatiq broker with no worker consuming it: jobs sent during the
    test stay on its queues (the test delivers them by hand, or never)."""
    from generations.worker import embedded

    with embedded.paused() as broker:
        broker.flush_all()
        yield broker
        broker.flush_all()


@pytest.fixture
def make_generation(tenant, stub_broker):
    """A queued generation created the way the API creates one (priced, its price held,
    its message sent to a broker nobody consumes); keyword arguments override the
    request's fields."""
    from generations.catalog import get_model
    from generations.services import generation_create
    from generations.types import GenerationRequest

    def make(*, model: str = "demo-sd", **overrides):
        fields = dict(
            spec=get_model(model),
            prompt="job",
            negative_prompt="",
            n=2,
            width=64,
            height=64,
            steps=2,
            guidance_scale=5.0,
            quality="auto",
            response_format="b64_json",
            output_format="png",
            seed=42,
        )
        fields.update(overrides)
        return generation_create(
            order=GenerationRequest(**fields),
            organization=tenant.org,
            api_key=tenant.key,
            user=tenant.user,
        )

    return make


def bearer_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def session_client(user, *, enforce_csrf: bool = False) -> APIClient:
    """A signed-in browser session (the management API's other way in)."""
    client = APIClient(enforce_csrf_checks=enforce_csrf)
    client.force_login(user)
    return client


class Tenant:
    # Plenty for any test that does not test money (1,000 credits).
    CREDITS = 1_000_000_000

    def __init__(self, name: str, credits: int = CREDITS):
        self.name = name
        self.user, _ = user_get_or_create(email=f"owner@{name}.example")
        self.org = organization_create(name=name, owner=self.user)
        if credits:
            credits_top_up(organization=self.org, amount=credits, memo="test fixture")
        self.key, self.secret = api_key_create(
            organization=self.org, created_by=self.user, name="test"
        )

    def client(self) -> APIClient:
        return bearer_client(self.secret)

    def member(self, role: str = Membership.Role.MEMBER, email: str | None = None):
        """A person in this organization with ``role`` (created if missing)."""
        user, _ = user_get_or_create(email=email or f"{role}@{self.name}.example")
        Membership.objects.update_or_create(
            organization=self.org, user=user, defaults={"role": role}
        )
        return user

    def new_key(self, user=None, scope: str = APIKey.Scope.GENERATE, **kwargs):
        """(key, secret) created by ``user`` (default: the owner)."""
        return api_key_create(
            organization=self.org, created_by=user or self.user, scope=scope, **kwargs
        )

    def manage_client(self, user=None) -> APIClient:
        """A client holding a 'manage' key created by ``user`` (default: the owner)."""
        _, secret = self.new_key(user, scope=APIKey.Scope.MANAGE, name="manage")
        return bearer_client(secret)


@pytest.fixture
def tenant(db) -> Tenant:
    return Tenant("acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return Tenant("globex")


@pytest.fixture
def api(tenant) -> APIClient:
    return tenant.client()


@pytest.fixture
def owner_session(tenant) -> APIClient:
    return session_client(tenant.user)
