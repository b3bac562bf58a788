"""The web server as `make run` starts it (gunicorn + imagehub.server.Worker, the embedded
worker in the same process), driven over real sockets: sync waits on the event loop,
slow clients, header and body limits, and a graceful stop. Behaviour with generous
bounds; the figures are `make bench-clients`'."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import openai
import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


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
def server(tmp_path_factory):
    """(base url, key, process, log path): the embedded default on its own database."""
    workdir = tmp_path_factory.mktemp("server")
    database_url = f"sqlite:///{workdir / 'db.sqlite3'}"
    database = None
    if _reachable(5432):
        import psycopg

        database = f"imagehub_srv_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        database_url = f"postgres://postgres@127.0.0.1:5432/{database}"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "DJANGO_SECRET_KEY": "srv-" + uuid.uuid4().hex,
        "DATABASE_URL": database_url,
        "IMAGEHUB_DATA_DIR": str(workdir),
        "IMAGEHUB_DEMO_MODELS_DIR": str(ROOT / "data" / "models"),
        "IMAGEHUB_WARMUP_MODELS": "demo-sd",
        "IMAGEHUB_HEADER_TIMEOUT_SECONDS": "2",
        "IMAGEHUB_BODY_TIMEOUT_SECONDS": "2",
        "IMAGEHUB_MAX_BODY_BYTES": "65536",
        # A limit, so that responses carry the rate-limit headers.
        "IMAGEHUB_DEFAULT_RPM_LIMIT": "100000",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    key = (
        subprocess.run(
            [*manage, "create_api_key", "srv@example.com", "--credits", "1000000000"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = _free_port()
    log = workdir / "web.log"
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "imagehub.asgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--worker-class",
            "imagehub.server.Worker",
            "--graceful-timeout",
            "60",
        ],
        env=env,
        cwd=ROOT,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.3)
    else:
        raise AssertionError(f"the server did not start\n{log.read_text()[-3000:]}")
    yield base, key, process, log
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if database:
        import psycopg

        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _split(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body) if body.strip() else {}


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def test_sync_generation_waits_on_the_loop(server):
    base, key, _, _ = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    raw = client.images.with_raw_response.generate(
        prompt="a lighthouse", size="64x64", n=2, extra_body={"seed": 7}
    )
    result = raw.parse()
    assert len(result.data) == 2 and base64.b64decode(result.data[0].b64_json)[:4] == b"\x89PNG"
    assert raw.headers["x-generation-id"].startswith("gen_")
    assert raw.headers["x-request-id"]
    # The placeholder's headers (set by the view before the wait) reach the answer.
    assert raw.headers["x-ratelimit-limit-requests"] == "100000"


def test_streams_are_relayed_event_by_event(server):
    base, key, _, _ = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    events = list(
        client.images.generate(
            prompt="a stream", size="64x64", stream=True, partial_images=1,
            extra_body={"seed": 3, "num_inference_steps": 4},
        )
    )  # fmt: skip
    kinds = [event.type for event in events]
    assert kinds[-1] == "image_generation.completed", kinds
    assert base64.b64decode(events[-1].b64_json)[:4] == b"\x89PNG"


def test_many_sync_requests_wait_at_once_and_all_get_their_images(server):
    base, key, _, _ = server
    answers = []

    def one(i: int) -> None:
        response = requests.post(
            f"{base}/v1/images/generations",
            headers={"Authorization": f"Bearer {key}"},
            json={"prompt": f"p{i}", "size": "64x64", "seed": i},
            timeout=300,
        )
        answers.append((response.status_code, response.json()["data"][0]["seed"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [(200, i) for i in range(40)]


def test_idempotent_replay_under_the_server(server):
    base, key, _, _ = server
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    body = {"prompt": "once", "size": "64x64", "seed": 1}
    first = requests.post(f"{base}/v1/images/generations", headers=headers, json=body, timeout=120)
    again = requests.post(f"{base}/v1/images/generations", headers=headers, json=body, timeout=120)
    assert first.status_code == again.status_code == 200
    assert first.headers["x-generation-id"] == again.headers["x-generation-id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_slow_clients_do_not_block_another_request(server):
    base, key, _, _ = server
    port = _port(base)
    slow = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(sock)
        started = time.monotonic()
        response = requests.get(
            f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert response.status_code == 200
        assert time.monotonic() - started < 5  # generous: it takes milliseconds
    finally:
        for sock in slow:
            sock.close()


def test_headers_that_never_end_get_408_in_the_envelope(server):
    base, _, _, _ = server
    started = time.monotonic()
    answer = _raw(_port(base), b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    status, body = _split(answer)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < 10


def test_a_body_that_stops_gets_408(server):
    base, key, _, _ = server
    request = (
        b"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt"'
    )
    status, body = _split(_raw(_port(base), request))
    assert status == 408 and body["error"]["code"] == "request_timeout"


def test_very_long_headers_get_431_in_the_envelope(server):
    base, _, _, _ = server
    response = requests.get(f"{base}/v1/models", headers={"X-Big": "a" * 40_000}, timeout=10)
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"


def test_a_20kb_bearer_token_gets_the_envelope(server):
    base, _, _, _ = server
    response = requests.get(
        f"{base}/v1/models", headers={"Authorization": "Bearer " + "a" * 20_000}, timeout=10
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_malformed_http_gets_400_in_the_envelope(server):
    base, _, _, _ = server
    status, body = _split(_raw(_port(base), b"NOT HTTP AT ALL\r\n\r\n"))
    assert status == 400 and body["error"]["code"] == "bad_request"


def test_chunked_bodies_are_read(server):
    base, key, _, _ = server

    def chunks():
        yield b'{"prompt": "chun'
        yield b'ked", "size": "64x64"}'

    response = requests.post(
        f"{base}/v1/images/generations",
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Prefer": "respond-async",
        },
        data=chunks(),
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] in ("queued", "running", "succeeded")


def test_chunked_bodies_are_held_to_the_size_limit(server):
    base, key, _, _ = server

    def chunks():
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"a" * 1024  # 100 KiB, over IMAGEHUB_MAX_BODY_BYTES (64 KiB here)
        yield b'"}'

    response = requests.post(
        f"{base}/v1/images/generations",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        data=chunks(),
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_metrics_are_not_served_without_a_token(server):
    base, _, _, _ = server
    assert requests.get(f"{base}/metrics", timeout=10).status_code == 404


def test_pages_carry_security_headers(server):
    base, _, _, _ = server
    response = requests.get(f"{base}/login/", timeout=10)
    policy = response.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy
        and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    )
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    docs = requests.get(f"{base}/docs/", timeout=10).text
    redoc = requests.get(f"{base}/redoc/", timeout=10).text
    for page in (docs, redoc):
        assert "https://" not in page  # no CDN, no third-party fonts
        assert "<script>" not in page  # no inline script


def test_a_stop_lets_waiting_requests_finish(server):
    """Last: SIGTERM while a sync request waits; it still gets its images."""
    base, key, process, log = server
    answer = {}

    def wait_for_images():
        response = requests.post(
            f"{base}/v1/images/generations",
            headers={"Authorization": f"Bearer {key}"},
            json={"prompt": "stop", "size": "64x64", "n": 4, "num_inference_steps": 30},
            timeout=120,
        )
        answer["status"] = response.status_code

    thread = threading.Thread(target=wait_for_images)
    thread.start()
    time.sleep(1.5)  # accepted, waiting
    process.send_signal(signal.SIGTERM)
    thread.join(timeout=120)
    assert answer.get("status") == 200, log.read_text()[-3000:]
    assert process.wait(timeout=60) == 0
