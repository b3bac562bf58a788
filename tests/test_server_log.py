"""The server's log, as `make run` shows it, says what happened and nothing else.

The embedded default (gunicorn on the event loop, SQLite, in-process worker threads)
warms up demo-sd, then serves a sync generation and its signed link, an async one, a
demo-flux one, an edit (which loads the image-to-image pipeline) and the OpenAPI schema.
Every line of its log must be gunicorn's, the access log's or one of our own loggers',
and each job must say it was queued, running and succeeded: a library's warning
(transformers, diffusers, torch, Django's ASGI handler, drf-spectacular) printed into it
fails here, quoted.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid

import pytest
import requests
from django.conf import settings

from tests.imagefiles import png_bytes
from tests.processes import BIN, MANAGE, ROOT, Process, free_port, wait_for, wait_web

pytestmark = pytest.mark.e2e

ALLOWED_LINES = [
    # gunicorn's own
    re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[INFO\] "),
    # ours, at any level (settings.LOGGING's "plain" format)
    re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ (imagehub|generations|accounts)[.\w]* "
    ),
    # the access log
    re.compile(r'^[\d.:\[\]a-f]+ - "[A-Z]+ \S+ HTTP/1\.1" \d{3}$'),
]


@pytest.fixture
def embedded_server(tmp_path):
    """`make run` in a data dir of its own: (base URL, API key, the server process)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "IMAGEHUB_DATA_DIR": str(tmp_path),
        "IMAGEHUB_DEMO_MODELS_DIR": str(settings.DEMO_MODELS_DIR),
        "DJANGO_SECRET_KEY": "log-" + uuid.uuid4().hex,
        "HF_HUB_OFFLINE": "1",
        "IMAGEHUB_WARMUP_MODELS": "demo-sd",
        "PYTHONUNBUFFERED": "1",
    }
    # The embedded default: SQLite in the data dir, the in-process broker.
    for name in ("DATABASE_URL", "DRAMATIQ_BROKER_URL", "REDIS_URL", "IMAGEHUB_NOTIFY"):
        env.pop(name, None)
    subprocess.run([*MANAGE, "migrate", "--noinput"], env=env, cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    key = subprocess.run(
        [*MANAGE, "create_api_key", "log@example.com", "--credits", "100000000"],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    port = free_port()
    # The Makefile's `run` target, less `make`.
    server = Process(
        "web",
        [str(BIN / "gunicorn"), "imagehub.asgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--worker-class", "imagehub.server.Worker", "--timeout", "360",
         "--graceful-timeout", "30", "--keep-alive", "75",
         "--access-logfile", "-", "--access-logformat", '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'],
        env,
        tmp_path / "server.log",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_web(base, server, seconds=120)
        wait_for(lambda: "warmed up demo-sd" in server.text(), 120,
                 lambda: f"the warm-up\n{server.tail()}")  # fmt: skip
        yield base, key, server
    finally:
        server.stop()


def test_the_server_log_has_our_lines_and_no_library_noise(embedded_server):
    base, key, server = embedded_server
    auth = {"Authorization": f"Bearer {key}"}
    ids = []

    def generate(path="/v1/images/generations", headers=(), **kwargs):
        response = requests.post(
            f"{base}{path}", headers={**auth, **dict(headers)}, timeout=120, **kwargs
        )
        assert response.status_code in (200, 202), response.text
        ids.append(response.json()["id"])
        return response.json()

    linked = generate(json={"prompt": "a log", "size": "64x64", "response_format": "url"})
    image = requests.get(linked["data"][0]["url"], timeout=30)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    generate(json={"prompt": "a flux", "model": "demo-flux", "size": "64x64"})
    generate(
        path="/v1/images/edits",
        files={"image": ("in.png", png_bytes((64, 64)), "image/png")},
        data={"prompt": "an edit", "size": "64x64"},
    )
    later = generate(json={"prompt": "later", "size": "64x64"}, headers={"Prefer": "respond-async"})
    wait_for(
        lambda: requests.get(f"{base}/v1/images/generations/{later['id']}", headers=auth,
                             timeout=30).json()["status"] == "succeeded",
        60, "the async generation",
    )  # fmt: skip
    # The schema is generated on first request: drf-spectacular prints what it cannot
    # resolve (an unnamed field type, colliding enum names or operation ids).
    assert requests.get(f"{base}/openapi.json", timeout=60).status_code == 200
    time.sleep(0.5)  # the last access-log lines
    server.stop()

    log = server.text()
    # Each job's life in three lines, named by the module that writes each (the web's
    # generation_create, then the worker's job).
    writers = {"queued": "services", "running": "worker.jobs", "succeeded": "worker.jobs"}
    for generation_id in ids:
        for state, writer in writers.items():
            line = rf"INFO generations\.{re.escape(writer)} {state} {generation_id}\b"
            assert re.search(line, log), f"no '{state}' line for {generation_id}\n{server.tail()}"
    noise = [
        line
        for line in log.splitlines()
        if line.strip() and not any(pattern.match(line) for pattern in ALLOWED_LINES)
    ]
    assert not noise, "lines that are not ours in the server log:\n" + "\n".join(noise)
