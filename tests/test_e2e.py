"""End to end, the way a deployment runs: a gunicorn web process, a Redis broker and a
separate worker process, driven by the official `openai` client."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import openai
import pytest
import requests
from django.conf import settings
from PIL import Image

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    if not _reachable(5432):
        yield f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'e2e.sqlite3'}"
        return
    import psycopg

    name = f"imagehub_e2e_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def stack(database_url, tmp_path_factory):
    """Migrated database, two tenants' keys, web + worker processes on a Redis broker."""
    if not _reachable(6379):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    workdir = tmp_path_factory.mktemp("stack")
    logs = Path(os.environ.get("IMAGEHUB_TEST_OUTPUT", workdir)) / "e2e-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "DJANGO_SECRET_KEY": "e2e-" + uuid.uuid4().hex,
        "DATABASE_URL": database_url,
        "DRAMATIQ_BROKER_URL": "redis://127.0.0.1:6379/13",
        # A queue of its own, so nothing else on this Redis takes our jobs.
        "IMAGEHUB_QUEUE": f"gpu-e2e-{uuid.uuid4().hex[:6]}",
        "IMAGEHUB_DATA_DIR": str(workdir),
        "IMAGEHUB_DEMO_MODELS_DIR": str(settings.DEMO_MODELS_DIR),
        "HF_HUB_OFFLINE": "1",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(
        [*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True
    )

    def new_key(email: str) -> str:
        out = subprocess.run(
            [*manage, "create_api_key", email, "--credits", "1000"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.strip().splitlines()[-1]

    keys = {"alice": new_key("alice@one.example"), "bob": new_key("bob@two.example")}
    port = _free_port()
    web = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "imagehub.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--timeout",
            "120",
        ],
        env=env,
        cwd=ROOT,
        stdout=open(logs / "web.log", "w"),
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [*manage, "runworker", "--threads", "1"],
        env=env,
        cwd=ROOT,
        stdout=open(logs / "worker.log", "w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # workers still booting
            pass
        assert web.poll() is None, (logs / "web.log").read_text()
        assert time.monotonic() < deadline, "web process did not come up"
        time.sleep(0.2)
    yield {"base": base, "keys": keys, "logs": logs}
    for process in (web, worker):
        process.send_signal(signal.SIGTERM)
    for process in (web, worker):
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(
        base_url=f"{stack['base']}/v1", api_key=stack["keys"]["alice"], max_retries=0, timeout=120
    )


def png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_b64_json_n2(client):
    result = client.images.generate(
        model="demo-sd", prompt="a red fox in snow", n=2, size="256x256", response_format="b64_json"
    )
    assert len(result.data) == 2
    for image in result.data:
        decoded = png(image.b64_json)
        assert decoded.format == "PNG" and decoded.size == (256, 256)
    assert result.usage.output_tokens == 2 * 32 * 32
    assert result.usage.input_tokens > 0
    assert result.usage.input_tokens_details.text_tokens == result.usage.input_tokens


def test_url(client):
    result = client.images.generate(
        model="demo-flux", prompt="a city at night", size="256x256", response_format="url"
    )
    fetched = requests.get(result.data[0].url, timeout=30)
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(fetched.content)).size == (256, 256)


def test_seed_reproducibility(client):
    def make(seed):
        return (
            client.images.generate(prompt="reproducible", size="128x128", extra_body={"seed": seed})
            .data[0]
            .b64_json
        )

    assert make(31337) == make(31337)
    assert make(31337) != make(31338)


def test_errors_map_to_sdk_exceptions(client, stack):
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="p", size="123x77")
    assert bad.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="p", n=50)
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(prompt="p", model="dall-e-42")
    assert missing.value.code == "model_not_found"
    stranger = openai.OpenAI(
        base_url=f"{stack['base']}/v1", api_key="ihk_nottherightkey_x", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        stranger.images.generate(prompt="p")
    assert [m.id for m in client.models.list() if m.id == "demo-sd"] == ["demo-sd"]


def test_async_polling_and_tenant_isolation(stack):
    base, keys = stack["base"], stack["keys"]
    alice = {"Authorization": f"Bearer {keys['alice']}"}
    created = requests.post(
        f"{base}/v1/images/generations",
        json={"prompt": "async"},
        headers={**alice, "Prefer": "respond-async"},
        timeout=30,
    )
    assert created.status_code == 202
    generation_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        polled = requests.get(
            f"{base}/v1/images/generations/{generation_id}", headers=alice, timeout=30
        ).json()
        if polled["status"] == "succeeded":
            break
        assert polled["status"] in ("queued", "running") and time.monotonic() < deadline
        time.sleep(0.1)
    assert png(polled["data"][0]["b64_json"]).size == (256, 256)
    foreign = requests.get(
        f"{base}/v1/images/generations/{generation_id}",
        headers={"Authorization": f"Bearer {keys['bob']}"},
        timeout=30,
    )
    assert foreign.status_code == 404
    assert foreign.headers["x-request-id"]
