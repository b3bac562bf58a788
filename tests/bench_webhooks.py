"""Webhook delivery, measured on real processes: a gunicorn web process and a
`runworker` process on a Redis broker and PostgreSQL, and a receiver on 127.0.0.1.

1. Latency: async generations with a webhook for `completed`, one after another; for
   each, the time from the generation's `finished_at` (the commit of the state change)
   to the delivery's arrival at the receiver. p50 and p95.
2. Restarts: a burst of jobs with `queued` and `completed` webhooks; the web process is
   SIGKILLed right after the last POST is answered (the receiver takes a second to answer,
   so first attempts of `queued` are in flight or not yet made) and started again, and
   the worker is SIGKILLed in the middle of the burst (jobs and their `completed`
   deliveries in flight) and started again.
   Every generation must finish and every expected delivery arrive: lost = expected
   (generation, event) pairs that never reached the receiver.

    python -m tests.bench_webhooks [--jobs 20] [--burst 10] [--out BENCHMARKS.md]

Needs PostgreSQL and Redis on 127.0.0.1 (a database and a Redis db of its own, dropped at
the end). Takes about a minute on a 2-core VM.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MANAGE = [sys.executable, str(ROOT / "manage.py")]
ADMIN_DB = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    def __init__(self, env: dict, logs: Path):
        self.env, self.logs = env, logs
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 - lives with the process
        # A session of its own: a kill takes the whole process group (gunicorn's workers).
        return subprocess.Popen(
            command, env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )

    def start_web(self) -> None:
        self.web = self._spawn(
            "web",
            [str(BIN / "gunicorn"), "imagehub.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--worker-class", "gthread", "--threads", "16"],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.web.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((self.logs / "web.log").read_text()[-3000:])
            time.sleep(0.2)

    def start_worker(self) -> None:
        self.worker = self._spawn("worker", [*MANAGE, "runworker", "--threads", "1"])

    def kill(self, name: str) -> None:
        process = getattr(self, name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.web, self.worker):
            if process is not None:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def submit(base: str, key: str, webhook: str, events: list[str]) -> str:
    response = requests.post(
        f"{base}/v1/images/generations",
        json={
            "prompt": "a lighthouse",
            "size": "64x64",
            "num_inference_steps": 2,
            "webhook": webhook,
            "webhook_events": events,
        },
        headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs for the latency phase")
    parser.add_argument("--burst", type=int, default=10, help="jobs for the restart phase")
    parser.add_argument("--out", help="append the results to this Markdown file")
    args = parser.parse_args()

    name = f"imagehub_bench_webhooks_{uuid.uuid4().hex[:8]}"
    database_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    logs = Path(os.environ.get("IMAGEHUB_TEST_OUTPUT", "/tmp")) / f"bench-webhooks-{name}"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "DATABASE_URL": database_url,
        "DRAMATIQ_BROKER_URL": "redis://127.0.0.1:6379/12",
        "IMAGEHUB_QUEUE": f"gpu-bench-webhooks-{uuid.uuid4().hex[:6]}",
        "IMAGEHUB_CACHE_PREFIX": f"bench-webhooks-{uuid.uuid4().hex[:6]}",
        "IMAGEHUB_DATA_DIR": str(logs / "data"),
        "IMAGEHUB_DEMO_MODELS_DIR": str(ROOT / "data" / "models"),
        "IMAGEHUB_WARMUP_MODELS": "demo-sd",
        "IMAGEHUB_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on 127.0.0.1
        # Faster than the defaults so that the restart phase takes seconds, not minutes.
        "IMAGEHUB_HEARTBEAT_SECONDS": "1",
        "IMAGEHUB_TAKEOVER_SECONDS": "3",
        "IMAGEHUB_RECOVERY_INTERVAL_SECONDS": "1",
        "IMAGEHUB_REDISPATCH_SECONDS": "2",
        "IMAGEHUB_WEBHOOK_TIMEOUT_SECONDS": "2",  # an attempt's lease: 3 x 2 + 5 s
        "HF_HUB_OFFLINE": "1",
        # Shared by this process (which makes the key) and the servers (which check it).
        "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "IMAGEHUB_API_KEY_SECRET": "bench-" + uuid.uuid4().hex,
    }
    os.environ.update(env)

    import psycopg

    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with ExitStack() as stack:
        stack.callback(_drop, name)
        subprocess.run([*MANAGE, "migrate", "--noinput"], env=env, cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        import django

        django.setup()
        from accounts.ledger import credits_top_up
        from accounts.services import api_key_create, organization_create, user_get_or_create
        from accounts.webhooks import endpoints
        from generations.models import Generation
        from tests.webhook_receiver import Receiver

        user, _ = user_get_or_create(email="bench@hooks.example")
        org = organization_create(name="bench-hooks", owner=user)
        credits_top_up(organization=org, amount=10**12, memo="bench")
        _, key = api_key_create(organization=org, created_by=user, name="bench")
        endpoints.webhook_endpoint_set(organization=org)

        receiver = stack.enter_context(Receiver())
        deployment = Deployment(env, logs)
        stack.callback(deployment.stop)
        deployment.start_web()
        deployment.start_worker()

        def arrivals(event: str) -> dict[str, float]:
            import json

            found: dict[str, float] = {}
            for r in list(receiver.received):
                body = json.loads(r.body)
                if body["type"] == f"image.generation.{event}":
                    found.setdefault(body["data"]["id"], r.at)
            return found

        def wait_finished(ids: list[str], seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if Generation.objects.filter(pk__in=ids, status="succeeded").count() == len(ids):
                    return
                time.sleep(0.2)
            raise SystemExit(f"not all finished; see {logs}")

        # Warm-up: the worker loads the model.
        warm = submit(deployment.base, key, f"{receiver.url}/warm", ["completed"])
        wait_finished([warm], 120)
        receiver.wait_for(1, timeout=10)

        # 1. Latency after completion.
        ids = []
        for _ in range(args.jobs):
            generation_id = submit(deployment.base, key, f"{receiver.url}/lat", ["completed"])
            ids.append(generation_id)
            wait_finished([generation_id], 60)
        deadline = time.monotonic() + 30
        while len(set(ids) & set(arrivals("completed"))) < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit("latency phase: deliveries missing")
            time.sleep(0.05)
        got = arrivals("completed")
        finished = dict(Generation.objects.filter(pk__in=ids).values_list("id", "finished_at"))
        latencies = [(got[g] - finished[g].timestamp()) * 1000 for g in ids]
        print(
            f"latency after completion: p50 {statistics.median(latencies):.1f} ms, "
            f"p95 {percentile(latencies, 95):.1f} ms ({len(ids)} jobs)",
            flush=True,
        )

        # 2. Restarts: web killed right after the burst is accepted, worker mid-burst.
        burst = []
        for i in range(args.burst):
            burst.append(
                # A receiver that takes a second to answer: the web dies with attempts in
                # flight and more waiting for a sender thread.
                submit(
                    deployment.base, key, f"{receiver.url}/slow/1/burst", ["queued", "completed"]
                )
            )
            if i == args.burst // 2:
                time.sleep(0.5)  # jobs running, deliveries in flight
                deployment.kill("worker")
                deployment.start_worker()
        deployment.kill("web")
        web_killed, web_killed_at = time.monotonic(), time.time()
        deployment.start_web()
        web_back = time.monotonic() - web_killed
        wait_finished(burst, 600)
        deadline = time.monotonic() + 60
        expected = {(g, e) for g in burst for e in ("queued", "completed")}

        def received_pairs() -> set[tuple[str, str]]:
            return {(g, e) for e in ("queued", "completed") for g in arrivals(e)} & expected

        while received_pairs() != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        lost = len(expected - received_pairs())
        queued_late = sum(
            1 for g, at in arrivals("queued").items() if g in burst and at > web_killed_at
        )
        taken_over = Generation.objects.filter(pk__in=burst, attempts__gt=1).count()
        from accounts.webhooks.models import WebhookDelivery

        # Attempts cut off by a kill are due again after their lease: let them settle.
        burst_rows = WebhookDelivery.objects.filter(generation_id__in=burst)
        deadline = time.monotonic() + 60
        while burst_rows.filter(status="pending").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        not_succeeded = burst_rows.exclude(status="succeeded").count()
        for row in burst_rows.filter(attempts__gt=1):
            print(f"  {row.event} {row.generation_id}: {row.attempts} attempts, {row.last_error}")
        duplicates = len(receiver.received) - len(
            {r.headers["webhook-id"] for r in receiver.received}
        )

    lines = [
        "",
        "## Webhook delivery (make bench-webhooks)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on this machine ({os.cpu_count()}-core CPU VM, "
        f"no GPU; load average {os.getloadavg()[0]:.1f} from other runs sharing it), Python "
        f"{platform.python_version()}: gunicorn web (1 process) + `runworker` (1 thread) on "
        "Redis and PostgreSQL, demo-sd 64×64, 2 steps; the receiver is http.server on "
        "127.0.0.1. Command: `make bench-webhooks` (`.venv/bin/python -m tests.bench_webhooks "
        f"--jobs {args.jobs} --burst {args.burst} --out BENCHMARKS.md`). Latency runs from the "
        "generation's `finished_at` (set before its money is settled and the transaction "
        "commits) to the delivery's arrival.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| delivery after completion, p50 ({len(latencies)} jobs) | "
        f"{statistics.median(latencies):.1f} ms |",
        f"| delivery after completion, p95 | {percentile(latencies, 95):.1f} ms |",
        f"| delivery after completion, max | {max(latencies):.1f} ms |",
        f"| restart phase: jobs, expected deliveries | {len(burst)}, {len(expected)} |",
        f"| jobs taken over after the worker's SIGKILL | {taken_over} |",
        f"| `queued` deliveries that arrived after the web's SIGKILL (sent by the workers' "
        f"recovery loop) | {queued_late} |",
        f"| worker SIGKILLed mid-burst and restarted; web SIGKILLed after the burst and "
        f"restarted (back in {web_back:.1f} s) | lost deliveries: **{lost}** |",
        f"| delivery rows of the burst not succeeded | {not_succeeded} |",
        f"| duplicate arrivals (same webhook-id; at-least-once) | {duplicates} |",
        "",
        "Recovery settings of this run: heartbeat 1 s, takeover 3 s, recovery loop every 1 s, "
        "webhook timeout 2 s (defaults 5/20/5/10 s: the same results, later). Duplicates are "
        "attempts cut off by a kill after the receiver had the body: retried after their lease "
        "with the same `webhook-id`. Targets: p50 under 100 ms; 0 lost.",
    ]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n".join(lines) + "\n")
    if lost:
        raise SystemExit(f"{lost} deliveries lost")


def _drop(name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
