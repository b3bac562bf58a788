"""What the fault-injection tests share: a deployment (gunicorn web servers and runworker
processes on the PostgreSQL *test* database and a real broker, with short liveness
settings), a client of its broker that can send, duplicate and lose messages, and the
checks every scenario ends with (every job finished, money moved once, no hold left,
the ledger reconciles)."""

from __future__ import annotations

import contextlib
import signal
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from accounts.models import CreditEntry, Organization
from generations.models import Generation
from tests import processes
from tests.processes import Process

REDIS = "redis://127.0.0.1:6379/10"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/%2F"
BROKERS = {"redis": (REDIS, 6379), "rabbitmq": (RABBITMQ, 5672)}
# Liveness settings in seconds, short enough for a test: a heartbeat every 0.5 s, a job
# silent for 3 s is taken over, recovery passes every 0.5 s, a queued job whose message
# may be lost is sent again after 2 s.
FAST = {
    "IMAGEHUB_HEARTBEAT_SECONDS": 0.5,
    "IMAGEHUB_TAKEOVER_SECONDS": 3,
    "IMAGEHUB_RECOVERY_INTERVAL_SECONDS": 0.5,
    "IMAGEHUB_REDISPATCH_SECONDS": 2,
}
TERMINAL = ("succeeded", "failed", "canceled")
# Generous bounds: the suite must pass on a loaded 2-core machine.
FINISH_SECONDS = 180


@pytest.fixture(autouse=True)
def _chaos_preconditions(settings):
    if connection.vendor != "postgresql":
        pytest.skip("the processes of a deployment need the PostgreSQL test database")
    # The test process creates jobs too (tests that send their messages by hand): the
    # same short settings as the processes.
    for name, value in FAST.items():
        setattr(settings, _SETTING[name], float(value))


_SETTING = {
    "IMAGEHUB_HEARTBEAT_SECONDS": "GENERATION_HEARTBEAT_SECONDS",
    "IMAGEHUB_TAKEOVER_SECONDS": "GENERATION_TAKEOVER_SECONDS",
    "IMAGEHUB_RECOVERY_INTERVAL_SECONDS": "RECOVERY_INTERVAL_SECONDS",
    "IMAGEHUB_REDISPATCH_SECONDS": "GENERATION_REDISPATCH_SECONDS",
}


# --- the broker -------------------------------------------------------------------------
class BrokerClient:
    """The test's own connection to a deployment's broker: sends generation messages the
    way generation_dispatch does, and loses what is queued the way a broker can."""

    def __init__(self, url: str, queue: str):
        self.url = url
        self.queue = queue
        self.queues = {queue}
        if url.startswith("redis"):
            from dramatiq.brokers.redis import RedisBroker

            self.broker = RedisBroker(url=url)
        else:
            from dramatiq.brokers.rabbitmq import RabbitmqBroker

            self.broker = RabbitmqBroker(url=url)

    @property
    def kind(self) -> str:
        return "redis" if self.url.startswith("redis") else "rabbitmq"

    def send(self, generation_id: str, queue: str | None = None) -> None:
        from dramatiq import Message

        queue = queue or self.queue
        self.queues.add(queue)
        self.broker.declare_queue(queue)
        self.broker.enqueue(
            Message(
                queue_name=queue,
                actor_name="generations.generate",
                args=(generation_id,),
                kwargs={},
                options={},
            )
        )

    def lose_messages(self, queue: str | None = None) -> int:
        """Delete the queue with every message on it; returns how many were lost."""
        return processes.delete_queue(self.url, queue or self.queue)

    def close(self) -> None:
        for queue in self.queues:
            try:
                self.lose_messages(queue)
            except Exception:  # noqa: BLE001 - clean-up of a broker a test may have stopped
                pass
        self.broker.close()


def broker_for(kind: str) -> str:
    url, port = BROKERS[kind]
    if not processes.reachable(port):
        pytest.skip(f"{kind} is not running on 127.0.0.1:{port}")
    return url


# --- the deployment ---------------------------------------------------------------------
class Deployment:
    """Web servers and workers of one deployment, on the test database; every process
    is stopped at the end of the test, and a failure shows their logs."""

    def __init__(self, *, broker_url: str, queue: str, workdir: Path, logdir: Path, **extra):
        self.broker_url = broker_url
        self.queue = queue
        self.logdir = logdir
        self.processes: list[Process] = []
        self.env = processes.server_env(
            database_url=processes.database_url_of(connection.settings_dict),
            broker_url=broker_url,
            queue=queue,
            data_dir=workdir,
            # The keys the test process creates must work in the web processes.
            DJANGO_SECRET_KEY=settings.SECRET_KEY,
            IMAGEHUB_API_KEY_SECRET=settings.API_KEY_HMAC_SECRET,
            IMAGEHUB_MEDIA_ROOT=settings.MEDIA_ROOT,
            IMAGEHUB_DEMO_MODELS_DIR=settings.DEMO_MODELS_DIR,
            **{**FAST, **extra},
        )

    def _log(self, kind: str) -> Path:
        count = sum(1 for p in self.processes if p.name.startswith(kind)) + 1
        return self.logdir / f"{kind}-{count}.log"

    def web(self, *, port: int | None = None, wait: bool = True, **options) -> Web:
        port = port or processes.free_port()
        process = processes.start_web(self.env, port=port, log=self._log("web"), **options)
        process.name = process.log.stem
        self.processes.append(process)
        web = Web(process, port)
        if wait:
            web.wait()
        return web

    def worker(self, *, wait: bool = True, **options) -> Process:
        process = processes.start_worker(self.env, log=self._log("worker"), **options)
        process.name = process.log.stem
        self.processes.append(process)
        if wait:
            processes.wait_worker(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.tail(40) for p in self.processes)

    def close(self) -> None:
        for process in self.processes:  # all told at once: they wind down together
            process.signal(signal.SIGCONT)
            process.signal(signal.SIGTERM)
        for process in self.processes:
            process.stop()
        with contextlib.suppress(Exception):  # a broker the test stopped
            processes.delete_queue(self.broker_url, self.queue)


class Web:
    def __init__(self, process: Process, port: int):
        self.process = process
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def wait(self) -> None:
        processes.wait_web(self.base, self.process)


def logdir_for(name: str) -> Path:
    return Path(settings.TEST_OUTPUT_DIR) / "chaos" / name.replace("/", "_")


@pytest.fixture
def deployment(request, tmp_path, stub_broker):
    """deployment(broker_url, **env) -> Deployment, stopped after the test; its logs go
    to the test output folder. `stub_broker` keeps the test process's own embedded
    worker and recovery loop out of the way."""
    made: list[Deployment] = []

    def make(broker_url: str, *, queue: str | None = None, **extra) -> Deployment:
        made.append(
            Deployment(
                broker_url=broker_url,
                queue=queue or f"chaos-{uuid.uuid4().hex[:8]}",
                workdir=tmp_path / f"data-{len(made)}",
                logdir=logdir_for(request.node.name),
                **extra,
            )
        )
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def broker_client():
    made: list[BrokerClient] = []

    def make(url: str, queue: str) -> BrokerClient:
        made.append(BrokerClient(url, queue))
        return made[-1]

    yield make
    for client in made:
        client.close()


# --- the HTTP side ------------------------------------------------------------------------
def job_body(index: int, *, size: int = 64, steps: int = 2, **more) -> dict:
    return {
        "model": "demo-sd",
        "prompt": f"chaos {index}",
        "size": f"{size}x{size}",
        "num_inference_steps": steps,
        "seed": index,
        **more,
    }


def session(secret: str) -> requests.Session:
    client = requests.Session()
    client.headers["Authorization"] = f"Bearer {secret}"
    return client


def submit_async(client: requests.Session, base: str, body: dict, **headers) -> requests.Response:
    return client.post(
        f"{base}/v1/images/generations",
        json=body,
        headers={"Prefer": "respond-async", **headers},
        timeout=120,
    )


# --- the checks ---------------------------------------------------------------------------
def wait_finished(ids, deployment: Deployment | None = None, seconds: float = FINISH_SECONDS):
    """Every generation of `ids` reaches a final status within `seconds`; returns them."""
    ids = list(ids)

    def finished():
        rows = list(Generation.objects.filter(pk__in=ids))
        return rows if len(rows) == len(ids) and all(r.status in TERMINAL for r in rows) else None

    def state() -> str:
        rows = Generation.objects.filter(pk__in=ids).values_list(
            "id", "status", "worker", "attempts", "dispatches"
        )
        return (
            "every job to finish: "
            + repr(list(rows))
            + ("\n" + deployment.logs() if deployment else "")
        )

    return processes.wait_for(finished, seconds, state, interval=0.2)


def assert_money_moved_once(ids, organization: Organization) -> None:
    """Each generation: one hold of its price, then its capture and/or release summing
    to the hold, the capture being what was delivered; the organization holds nothing;
    reconcile_ledger finds no mismatch and no stale hold."""
    for generation in Generation.objects.filter(pk__in=list(ids)):
        entries = list(CreditEntry.objects.filter(generation_id=generation.id).order_by("pk"))
        kinds = [entry.kind for entry in entries]
        assert kinds[0] == "hold" and sorted(kinds[1:]) in (
            ["capture"],
            ["release"],
            ["capture", "release"],
        ), (generation.id, generation.status, kinds)
        assert entries[0].held == generation.price
        assert sum(entry.held for entry in entries) == 0, (generation.id, kinds)
        captured = sum(-entry.held for entry in entries if entry.kind == "capture")
        assert captured == generation.charged
        images = generation.images.count()
        if generation.status == "succeeded":
            assert images == generation.n
            assert captured == generation.price
        else:
            assert captured == 0
    organization.refresh_from_db()
    assert organization.credits_held == 0
    call_command("reconcile_ledger", verbosity=0)


def assert_all_succeeded(rows, deployment: Deployment | None = None) -> None:
    failed = [
        (r.id, r.status, r.error_code, r.error_message) for r in rows if r.status != "succeeded"
    ]
    assert not failed, f"{failed}\n{deployment.logs() if deployment else ''}"
