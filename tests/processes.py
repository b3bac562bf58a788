"""Real processes for the tests and benchmarks that drive a deployment: gunicorn web
servers, `manage.py runworker` processes and private redis-servers, with the environment
they share and the ways to tell they are up; and the deletion of a deployment's broker
queue (what a broker that loses its messages does, and the clean-up after a test).

Each process writes its output to a log file of its own; a failing check quotes the tail
of that log, since that is where the reason is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MANAGE = [sys.executable, str(ROOT / "manage.py")]
T = TypeVar("T")


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], T], seconds: float, what: str | Callable[[], str], interval=0.1
) -> T:
    """Poll `predicate` until it returns something true; fail after `seconds` saying
    what was awaited (`what` may be a function, for a message read at that moment)."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for "
                                 f"{what() if callable(what) else what}")  # fmt: skip
        time.sleep(interval)


def database_url_of(settings_dict: dict) -> str:
    """A DATABASE_URL for other processes to reach the database of `settings_dict`
    (Django's connection.settings_dict: in a test, the test database)."""
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def server_env(*, database_url: str, broker_url: str, queue: str, data_dir: Path, **extra) -> dict:
    """The environment of a web or worker process of one deployment (`extra`: more
    variables, e.g. IMAGEHUB_HEARTBEAT_SECONDS; a value of None removes the variable)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "DATABASE_URL": database_url,
        "DRAMATIQ_BROKER_URL": broker_url,
        # A queue of its own, so that nothing else on the broker takes these jobs.
        "IMAGEHUB_QUEUE": queue,
        "IMAGEHUB_DATA_DIR": str(data_dir),
        "IMAGEHUB_DEMO_MODELS_DIR": str(ROOT / "data" / "models"),
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or uuid.uuid4().hex,
        "HF_HUB_OFFLINE": "1",
        "IMAGEHUB_WARMUP_MODELS": "demo-sd",
        "PYTHONUNBUFFERED": "1",
    }
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


class Process:
    """A started process and its log file."""

    def __init__(self, name: str, args: list[str], env: dict, log: Path, *, append=False):
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(log, "ab" if append else "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            # Its own process group: a signal to the group reaches a server's children too.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(self.text().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the process and every child of it (a gunicorn master and its workers)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def wait(self, seconds: float) -> int | None:
        try:
            return self.popen.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, seconds: float = 20) -> None:
        """SIGTERM, then SIGKILL to the process group if it is still there after
        `seconds`; never raises."""
        if self.alive():
            self.signal(signal.SIGTERM)
            if self.wait(seconds) is None:
                self.kill_group()
        self._out.close()


def start_web(
    env: dict,
    *,
    port: int,
    log: Path,
    workers: int = 1,
    threads: int = 16,
    graceful_timeout: float = 30,
    extra: Iterable[str] = (),
) -> Process:
    """gunicorn serving imagehub the way the Makefile does (gthread workers)."""
    return Process(
        "web",
        [
            str(BIN / "gunicorn"),
            "imagehub.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--timeout",
            "120",
            "--graceful-timeout",
            str(graceful_timeout),
            "--keep-alive",
            "75",
            *extra,
        ],
        env,
        log,
    )


def wait_web(base: str, web: Process, seconds: float = 90) -> None:
    def up() -> bool:
        assert web.alive(), web.tail()
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.RequestException:  # still booting
            return False

    wait_for(up, seconds, lambda: f"the web server to answer\n{web.tail()}")


def start_worker(
    env: dict, *, log: Path, threads: int | None = None, queues: Iterable[str] = ()
) -> Process:
    args = [*MANAGE, "runworker"]
    if threads:
        args += ["--threads", str(threads)]
    if queues:
        args += ["--queues", *queues]
    return Process("worker", args, env, log)


def wait_worker(worker: Process, seconds: float = 180) -> None:
    """Until the worker has loaded its models and consumes ("worker up" in its log)."""

    def up() -> bool:
        assert worker.alive(), worker.tail()
        return "worker up" in worker.text()

    wait_for(up, seconds, lambda: f"the worker to come up\n{worker.tail()}", interval=0.2)


def worker_name(worker: Process) -> str:
    """What the worker writes in Generation.worker (generations/worker/liveness.py)."""
    return f"{socket.gethostname()}:{worker.pid}"


class RedisServer:
    """A private redis-server on a port of its own, without persistence, that a test may
    stop and start again (on the same port)."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.process: Process | None = None
        self.binary = shutil.which("redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = Process(
            "redis",
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            dict(os.environ),
            self.workdir / "redis.log",
            append=True,
        )
        wait_for(lambda: reachable(self.port), 20, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.wait(10)
            self.process.stop()
            self.process = None
        wait_for(lambda: not reachable(self.port), 10, f"port {self.port} to close")


def delete_queue(broker_url: str, queue: str) -> int:
    """Delete a Dramatiq queue, with its delay and dead-letter queues and every message
    on them, from a Redis or RabbitMQ broker; returns how many messages were waiting."""
    if broker_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker_url)
        try:
            lost = client.llen(f"dramatiq:{queue}")
            patterns = (
                f"dramatiq:{queue}",
                f"dramatiq:{queue}.*",
                # What each worker had taken (and not acknowledged: a killed one).
                f"dramatiq:__acks__.*.{queue}",
                f"dramatiq:__acks__.*.{queue}.*",
            )
            keys = [key for pattern in patterns for key in client.scan_iter(match=pattern)]
            if keys:
                client.delete(*keys)
            return lost
        finally:
            client.close()
    import pika

    lost = 0
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            try:
                lost += channel.queue_delete(queue=name).method.message_count
            except pika.exceptions.ChannelClosedByBroker:  # not there
                channel = connection.channel()
    finally:
        connection.close()
    return lost
