"""Shared fixtures: tenants with keys, an API client, and the in-process worker."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.services import api_key_create, organization_create, user_get_or_create


@pytest.fixture(scope="session", autouse=True)
def demo_models(django_db_blocker):
    """The demo models, built once into the data dir (make test builds them first)."""
    call_command("build_demo_models", verbosity=0)


@pytest.fixture(scope="session", autouse=True)
def _stop_local_worker():
    yield
    from imagehub.broker import stop_local_worker

    stop_local_worker()


class Tenant:
    def __init__(self, name: str):
        self.user, _ = user_get_or_create(email=f"owner@{name}.example")
        self.org = organization_create(name=name, owner=self.user)
        self.key, self.secret = api_key_create(
            organization=self.org, created_by=self.user, name="test"
        )

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.secret}")
        return client


@pytest.fixture
def tenant(db) -> Tenant:
    return Tenant("acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return Tenant("globex")


@pytest.fixture
def api(tenant) -> APIClient:
    return tenant.client()
