"""The served OpenAPI schema against the server, by schemathesis: for every operation,
requests generated from the schema (valid ones and, where the schema allows it, invalid
ones) get no server error and no response the schema does not describe (status code,
content type, headers, body).

Both modes: requests valid by the schema, and invalid ones (which must get a documented
4xx, never a 5xx). Bounded by FUZZ_EXAMPLES examples per operation and mode
(IMAGEHUB_FUZZ_EXAMPLES, 50 by default: 26 operations, 2,600 cases in about 40 s on the
CI machine), and every operation is fuzzed in both modes: an operation for which no case
could be generated fails. The counts (operations, cases, failures) are printed at the
end of the module.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Tenant

FUZZ_EXAMPLES = int(os.environ.get("IMAGEHUB_FUZZ_EXAMPLES", "50"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
COUNTS: Counter = Counter()

schema = schemathesis.openapi.from_wsgi("/openapi.json", WSGIHandler())
OPERATIONS = [result.ok() for result in schema.get_all_operations() if result.ok() is not None]


def _label(operation) -> str:
    return f"{operation.method.upper()} {operation.path}"


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    """After the module: the counts for the record."""
    started = time.monotonic()
    yield
    cases = sum(n for name, n in COUNTS.items() if name != "failures")
    print(
        f"\nschemathesis: {len(OPERATIONS)} operations, {cases} cases, "
        f"{COUNTS['failures']} failures, {time.monotonic() - started:.0f} s"
    )


@pytest.fixture
def fuzz_tenant(db, settings):
    # No request waits for a worker: every create answers at once (respond-async below),
    # a stream gives up at once.
    settings.SYNC_WAIT_SECONDS = 0.2
    settings.METRICS_TOKEN = ""
    tenant = Tenant("fuzz")
    _, manage = tenant.new_key(scope="manage", name="fuzz-manage")
    # The requests run inside the test's transaction, on its connection: keep Django from
    # closing it after each one (its test client does the same).
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        yield tenant, manage
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


def _headers(operation, tenant, manage_secret) -> dict:
    management = operation.path.startswith(("/v1/keys", "/v1/organization", "/v1/webhook"))
    secret = manage_secret if management else tenant.secret
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("operation", OPERATIONS, ids=_label)
def test_operation_follows_its_schema(operation, mode, fuzz_tenant):
    tenant, manage_secret = fuzz_tenant
    headers = _headers(operation, tenant, manage_secret)
    label = _label(operation)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        case.headers = {**(case.headers or {}), **headers}
        if operation.method.upper() == "POST":
            case.headers["Prefer"] = "respond-async"
        COUNTS[label, mode] += 1
        try:
            case.call_and_validate(checks=CHECKS)
        except BaseException:  # schemathesis raises groups of failures
            COUNTS["failures"] += 1
            raise

    run()
    assert COUNTS[label, mode] > 0, f"no {mode.value} case could be generated for {label}"
