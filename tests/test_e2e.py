"""End to end, the way a deployment runs: a gunicorn web process, a Redis broker and a
separate worker process, driven by the official `openai` client."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import openai
import pytest
import requests
from django.conf import settings
from PIL import Image

from tests.processes import (
    MANAGE,
    ROOT,
    free_port,
    reachable,
    server_env,
    start_web,
    start_worker,
    wait_web,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    if not reachable(5432):
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
    if not reachable(6379):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    workdir = tmp_path_factory.mktemp("stack")
    logs = Path(os.environ.get("IMAGEHUB_TEST_OUTPUT", workdir)) / "e2e-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = server_env(
        database_url=database_url,
        broker_url="redis://127.0.0.1:6379/13",
        queue=f"gpu-e2e-{uuid.uuid4().hex[:6]}",
        data_dir=workdir,
        DJANGO_SECRET_KEY="e2e-" + uuid.uuid4().hex,
        IMAGEHUB_DEMO_MODELS_DIR=settings.DEMO_MODELS_DIR,
        IMAGEHUB_WARMUP_MODELS=None,  # the first requests load the models
    )
    manage = MANAGE
    subprocess.run(
        [*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True
    )

    def new_key(email: str) -> str:
        out = subprocess.run(
            [*manage, "create_api_key", email, "--credits", "1000000000"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.strip().splitlines()[-1]

    keys = {"alice": new_key("alice@one.example"), "bob": new_key("bob@two.example")}
    keys["alice_manage"] = (
        subprocess.run(
            [*manage, "create_api_key", "alice@one.example", "--scope", "manage"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    # gunicorn appends to its access log: start each run with an empty one, so that a
    # rerun does not count the earlier run's processes.
    open(logs / "access.log", "w").close()
    port = free_port()
    web = start_web(
        env,
        port=port,
        log=logs / "web.log",
        workers=2,
        threads=8,
        # The serving worker's pid per request: proves both processes took requests.
        extra=[
            "--access-logfile",
            str(logs / "access.log"),
            "--access-logformat",
            "%(p)s %(s)s %(U)s",
        ],
    )
    worker = start_worker(env, log=logs / "worker.log", threads=1)
    base = f"http://127.0.0.1:{port}"
    wait_web(base, web, seconds=60)
    yield {"base": base, "keys": keys, "logs": logs}
    for process in (web, worker):
        process.signal(signal.SIGTERM)
    for process in (web, worker):
        process.stop()


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


def _png_file(tmp_path, name: str, image: Image.Image) -> Path:
    path = tmp_path / name
    image.save(path, format="PNG")
    return path


@pytest.mark.parametrize("model", ["demo-sd", "demo-flux"])
def test_edit_with_mask_keeps_unmasked_pixels(client, tmp_path, model):
    source = Image.new("RGB", (128, 128))
    source.putdata([(x * 2, y * 2, (x + y) % 256) for y in range(128) for x in range(128)])
    mask = Image.new("RGBA", (128, 128), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 64, 128))  # transparent left half: repaint it
    image_path = _png_file(tmp_path, "in.png", source)
    mask_path = _png_file(tmp_path, "mask.png", mask)
    with open(image_path, "rb") as image, open(mask_path, "rb") as mask_file:
        result = client.images.edit(
            image=image, mask=mask_file, prompt="a window", model=model, extra_body={"seed": 1}
        )
    edited = png(result.data[0].b64_json).convert("RGB")
    assert edited.size == (128, 128)
    assert list(edited.crop((64, 0, 128, 128)).getdata()) == list(
        source.crop((64, 0, 128, 128)).getdata()
    )
    assert result.usage.input_tokens_details.image_tokens > 0
    with open(image_path, "rb") as image:
        plain = client.images.edit(image=image, prompt="no mask", model=model, size="128x128")
    assert png(plain.data[0].b64_json).size == (128, 128)


def test_edit_errors_name_the_field(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with open(text, "rb") as handle, pytest.raises(openai.BadRequestError) as bad:
        client.images.edit(image=handle, prompt="p")
    assert bad.value.body["param"] == "image"
    image_path = _png_file(tmp_path, "in.png", Image.new("RGB", (128, 128)))
    mask_path = _png_file(tmp_path, "small.png", Image.new("RGBA", (64, 64)))
    with open(image_path, "rb") as image, open(mask_path, "rb") as mask:
        with pytest.raises(openai.BadRequestError) as bad:
            client.images.edit(image=image, mask=mask, prompt="p")
    assert bad.value.body["param"] == "mask"


def test_variation(client, tmp_path):
    image_path = _png_file(tmp_path, "in.png", Image.new("RGB", (128, 128), (10, 200, 30)))
    with open(image_path, "rb") as image:
        result = client.images.create_variation(image=image, n=2, model="demo-sd")
    assert len(result.data) == 2
    assert all(png(item.b64_json).size == (128, 128) for item in result.data)


def test_streamed_generation(client):
    stream = client.images.generate(
        model="demo-sd", prompt="streaming", size="128x128", stream=True, partial_images=2
    )
    received = list(stream)
    assert [event.type for event in received] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [event.partial_image_index for event in received[:2]] == [0, 1]
    completed = received[-1]
    assert png(completed.b64_json).size == (128, 128)
    assert completed.usage.output_tokens == 16 * 16 and completed.usage.total_tokens > 0


def test_streamed_edit(client, tmp_path):
    image_path = _png_file(tmp_path, "in.png", Image.new("RGB", (128, 128), (90, 90, 200)))
    with open(image_path, "rb") as image:
        stream = client.images.edit(
            image=image, prompt="stream", model="demo-flux", stream=True, partial_images=1
        )
        received = list(stream)
    assert [event.type for event in received] == [
        "image_edit.partial_image",
        "image_edit.completed",
    ]
    assert received[-1].usage.input_tokens_details.image_tokens == 8 * 8


def test_rate_limit_is_shared_by_two_web_processes(stack):
    """gunicorn runs two worker processes here; their counters live in Redis."""
    base, keys, access_log = stack["base"], stack["keys"], stack["logs"] / "access.log"
    manage = {"Authorization": f"Bearer {keys['alice_manage']}"}
    created = requests.post(
        f"{base}/v1/keys",
        headers=manage,
        timeout=30,
        json={"name": "limited", "limits": {"rpm_limit": 6}},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    if time.time() % 60 > 40:  # finish inside one one-minute window
        time.sleep(61 - time.time() % 60)
    statuses, headers, pids = [], [], set()
    while len(statuses) < 40 and (len(statuses) < 10 or len(pids) < 2):
        # A new connection each time, so both processes get a chance to accept.
        response = requests.post(
            f"{base}/v1/images/generations",
            json={"prompt": "rl", "size": "64x64"},
            headers={
                "Authorization": f"Bearer {secret}",
                "Prefer": "respond-async",
                "Connection": "close",
            },
            timeout=30,
        )
        statuses.append(response.status_code)
        headers.append(response.headers)
        pids = {
            line.split()[0]
            for line in access_log.read_text().splitlines()
            if "/v1/images/generations" in line
        }
    assert len(pids) == 2, "both web processes should have served requests"
    assert statuses == [202] * 6 + [429] * (len(statuses) - 6)
    assert [h["x-ratelimit-remaining-requests"] for h in headers[:6]] == list("543210")
    assert all(h["x-ratelimit-limit-requests"] == "6" for h in headers)
    assert all(int(h["Retry-After"]) >= 1 for h in headers[6:])
