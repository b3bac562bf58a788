"""The web process never loads the engine: a fresh interpreter on the production settings
(a broker URL set, so the workers are other processes) imports the URLconf and serves
one request of each kind (the Images API in every answer mode, edits, variations, the
list, cancel, files, models, credits, usage, the management API, the pages, the docs,
metrics and health), and neither torch, diffusers nor generations.engine is loaded after.
.ci/check_imports.py proves the same over the source; this proves it of the running code,
lazy imports and Django's own discovery included."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import APIKey
from tests.adapters import demo_file
from tests.conftest import Tenant
from tests.processes import ROOT, database_url_of, delete_queue, reachable, server_env

pytestmark = pytest.mark.e2e

FORBIDDEN = ("torch", "diffusers", "generations.engine")

# Runs in the fresh interpreter: (method, path, options) for every kind of request, then
# what it answered and which forbidden modules are loaded.
SCRIPT = r"""
import io, json, os, sys
import django
django.setup()
from django.test import Client
from django.urls import get_resolver
from PIL import Image

get_resolver().url_patterns  # the whole URLconf, every view module imported

def png():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buffer, format="PNG")
    buffer.seek(0)
    buffer.name = "input.png"
    return buffer

bearer = {"HTTP_AUTHORIZATION": "Bearer " + os.environ["PROBE_KEY"]}
manage = {"HTTP_AUTHORIZATION": "Bearer " + os.environ["PROBE_MANAGE_KEY"]}
asynchronous = {**bearer, "HTTP_PREFER": "respond-async"}
body = {"model": "demo-sd", "prompt": "a lighthouse", "size": "64x64", "num_inference_steps": 2}
api = Client()
answers = {}

def ask(label, method, path, client=api, **options):
    response = getattr(client, method)(path, **options)
    if response.streaming:
        b"".join(response.streaming_content)
    answers[label] = response.status_code
    if response.status_code >= 400 and not response.streaming:
        print(label, response.content[:300], file=sys.stderr)
    return response

created = ask("create async", "post", "/v1/images/generations", data=body,
              content_type="application/json", **asynchronous).json()
ask("create sync (no worker: 504)", "post", "/v1/images/generations", data=body,
    content_type="application/json", **bearer, HTTP_PREFER="wait=1")
ask("create streaming", "post", "/v1/images/generations",
    data={**body, "stream": True, "partial_images": 1}, content_type="application/json", **bearer)
ask("edit", "post", "/v1/images/edits", data={"image": png(), "prompt": "purple sky",
    "model": "demo-sd", "size": "64x64"}, **asynchronous)
ask("variation", "post", "/v1/images/variations", data={"image": png(), "model": "demo-sd",
    "size": "64x64"}, **asynchronous)
ask("list", "get", "/v1/images/generations", **bearer)
ask("retrieve", "get", "/v1/images/generations/" + created["id"], **bearer)
ask("cancel", "post", "/v1/images/generations/" + created["id"] + "/cancel", **bearer)
ask("bad file link", "get", "/v1/files/x.png?expires=1&signature=x")
ask("models", "get", "/v1/models", **bearer)
ask("model", "get", "/v1/models/demo-sd", **bearer)
ask("credits", "get", "/v1/credits", **bearer)
ask("usage", "get", "/v1/usage", **bearer)
for path in ("/v1/keys", "/v1/organization", "/v1/organization/members", "/v1/webhook",
             "/v1/webhook/deliveries"):
    ask("management " + path, "get", path, **manage)
for path in ("/login/", "/signup/", "/password-reset/", "/docs/", "/openapi.json",
             "/healthz", "/admin/login/"):
    ask("page " + path, "get", path)
lora = open(os.environ["PROBE_ADAPTER_FILE"], "rb")
adapter = ask("adapter upload", "post", "/v1/adapters", data={"file": lora,
    "base_model": "demo-sd", "name": "probe"}, **manage).json()
ask("adapters", "get", "/v1/adapters", **bearer)
ask("adapter", "get", "/v1/adapters/" + adapter["id"], **bearer)
ask("create with loras", "post", "/v1/images/generations",
    data={**body, "loras": [{"id": adapter["id"], "scale": 0.5}]},
    content_type="application/json", **asynchronous)
ask("metrics", "get", "/metrics", HTTP_AUTHORIZATION="Bearer probe-metrics")
from accounts.models import User
pages = Client()
pages.force_login(User.objects.get(email=os.environ["PROBE_EMAIL"]))
for path in ("/keys/", "/members/", "/organization/", "/webhooks/", "/usage/", "/adapters/"):
    ask("signed in " + path, "get", path, client=pages)
print(json.dumps({
    "answers": answers,
    "loaded": [name for name in json.loads(os.environ["PROBE_FORBIDDEN"]) if name in sys.modules],
}))
"""

EXPECTED = {
    "create async": 202,
    "create sync (no worker: 504)": 504,
    "create streaming": 200,
    "edit": 202,
    "variation": 202,
    "list": 200,
    "retrieve": 200,
    "cancel": 200,
    "bad file link": 403,
    "models": 200,
    "model": 200,
    "credits": 200,
    "usage": 200,
    **{
        f"management {path}": 200
        for path in (
            "/v1/keys",
            "/v1/organization",
            "/v1/organization/members",
            "/v1/webhook",
            "/v1/webhook/deliveries",
        )
    },
    **{
        f"page {path}": 200
        for path in ("/login/", "/signup/", "/password-reset/", "/docs/", "/openapi.json")
    },
    "page /healthz": 200,
    "metrics": 200,
    "page /admin/login/": 200,
    "adapter upload": 201,
    "adapters": 200,
    "adapter": 200,
    "create with loras": 202,
    **{
        f"signed in {path}": 200
        for path in ("/keys/", "/members/", "/organization/", "/webhooks/", "/usage/", "/adapters/")
    },
}


def _database_url() -> str:
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    return database_url_of(settings)


@pytest.mark.django_db(transaction=True)
def test_the_web_process_serves_every_kind_of_request_without_the_engine(tmp_path):
    if not reachable(6379):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    tenant = Tenant("webprocess")
    _, manage_secret = tenant.new_key(scope=APIKey.Scope.MANAGE, name="manage")
    # A catalog that names a scheduler too: validating it must not load diffusers.
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([{"id": "demo-sd", "scheduler": "DPMSolverMultistepScheduler"}]))
    broker_url = "redis://127.0.0.1:6379/13"
    queue = f"gpu-web-{uuid.uuid4().hex[:6]}"
    env = server_env(
        database_url=_database_url(),
        broker_url=broker_url,
        queue=queue,
        data_dir=tmp_path,
        IMAGEHUB_SYNC_WAIT_SECONDS=1,
        IMAGEHUB_MODEL_CATALOG=catalog,
        # Key digests are keyed with it: the keys made here must work there.
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        IMAGEHUB_METRICS_TOKEN="probe-metrics",
        PROBE_KEY=tenant.secret,
        PROBE_MANAGE_KEY=manage_secret,
        PROBE_EMAIL=tenant.user.email,
        PROBE_FORBIDDEN=json.dumps(FORBIDDEN),
        PROBE_ADAPTER_FILE=demo_file("demo-sd"),
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        delete_queue(broker_url, queue)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["answers"] == EXPECTED
    assert report["loaded"] == [], f"the web process loaded {report['loaded']}"
