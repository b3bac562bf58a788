"""make chaos: faults injected into a real deployment, with the DEFAULT liveness settings
(heartbeat 5 s, takeover after 20 s of silence, a recovery pass every 5 s, a queued job
sent again 60 s after its message), and what they cost.

    .venv/bin/python -m tests.chaos_bench [--trials 20] [--out BENCHMARKS.md]

Each fault gets a deployment of its own: a scratch PostgreSQL database (cloned from one
migrated for the run, imagehub_chaos_<pid>; all dropped at the end), its own broker
queue, a gunicorn web server and `manage.py runworker` processes. Jobs are demo-sd
requests made over HTTP, as a client makes them. Measured:

- worker SIGKILL mid-batch, `--trials` times per broker (Redis and RabbitMQ, side by
  side): recovery time of every job the dead worker was running (kill -> succeeded),
  jobs lost, charged twice, holds left;
- broker down at submit (a private redis-server, stopped for a while): requests
  answered 202, jobs lost, holds stuck;
- broker losing its queued messages (the queue deleted, Redis and RabbitMQ): jobs lost,
  holds stuck, how long until they ran;
- database blips (pg_terminate_backend of every connection) while clients create and
  poll: failed requests per blip, non-JSON answers, jobs stuck;
- a web restart (SIGTERM) during 50 sync waits, with the Makefile's graceful timeout and
  with a 1 s one: clients that got their images, clients cut off, retries with the same
  Idempotency-Key, double charges.

The fault scenarios run while the SIGKILL trials run (they mostly wait), so the whole
run takes about 10 minutes on a 2-core machine. Results replace the
"## Faults (make chaos)" section of the --out file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests import processes
from tests.processes import MANAGE, ROOT, Process, RedisServer

ADMIN_DB = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/9"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/%2F"
SECTION = "## Faults (make chaos)"
# Whatever the caller's environment says, these keep their defaults here.
LIVENESS = (
    "IMAGEHUB_HEARTBEAT_SECONDS",
    "IMAGEHUB_TAKEOVER_SECONDS",
    "IMAGEHUB_RECOVERY_INTERVAL_SECONDS",
    "IMAGEHUB_REDISPATCH_SECONDS",
    "IMAGEHUB_JOB_MAX_ATTEMPTS",
    "IMAGEHUB_QUEUE_TIMEOUT_SECONDS",
    "IMAGEHUB_SYNC_WAIT_SECONDS",
    "IMAGEHUB_JOB_TIME_LIMIT",
)
TERMINAL = ("succeeded", "failed", "canceled")
STARTED = time.monotonic()
_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(f"[{time.monotonic() - STARTED:6.0f}s] {message}", flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def job(index: int, *, size: int = 128, steps: int = 8) -> dict:
    return {
        "model": "demo-sd",
        "prompt": f"chaos bench {index}",
        "size": f"{size}x{size}",
        "num_inference_steps": steps,
        "seed": index,
    }


# --- databases ------------------------------------------------------------------------------
class Databases:
    """One migrated database for the run, and a clone of it per deployment."""

    def __init__(self):
        self.template = f"imagehub_chaos_{os.getpid()}"
        self.clones: list[str] = []

    @staticmethod
    def url(name: str) -> str:
        return f"postgres://postgres@127.0.0.1:5432/{name}"

    @staticmethod
    def admin(statement: str) -> None:
        import psycopg

        with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
            conn.execute(statement)

    def prepare(self, workdir: Path) -> None:
        self.admin(f"CREATE DATABASE {self.template}")
        env = processes.server_env(
            database_url=self.url(self.template),
            broker_url=REDIS,
            queue="unused",
            data_dir=workdir / "migrate",
        )
        subprocess.run([*MANAGE, "migrate", "-v0"], env=env, cwd=ROOT, check=True)

    def clone(self, name: str) -> str:
        clone = f"{self.template}_{name}"
        self.admin(f"CREATE DATABASE {clone} TEMPLATE {self.template}")
        self.clones.append(clone)
        return self.url(clone)

    def drop(self) -> None:
        for name in [*self.clones, self.template]:
            with contextlib.suppress(Exception):
                self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- one deployment -------------------------------------------------------------------------
@dataclass
class Money:
    generations: int = 0
    charged_twice: int = 0  # more than one hold or capture, or more captured than held
    holds_left: int = 0  # generations with credits still held for them at the end
    held: int = 0  # the organizations' credits_held at the end (micro-credits)
    reconciles: bool = True

    def clean(self) -> bool:
        return self.reconciles and not (self.charged_twice or self.holds_left or self.held)


class Stack:
    """A deployment of its own: database, broker queue, web servers, workers, one key."""

    def __init__(self, name: str, *, database_url: str, broker_url: str, workdir: Path, **env):
        self.name = name
        self.database_url = database_url
        self.broker_url = broker_url
        self.queue = f"chaos-bench-{name}-{uuid.uuid4().hex[:6]}"
        self.logs = workdir / name
        self.processes: list[Process] = []
        self.env = processes.server_env(
            database_url=database_url,
            broker_url=broker_url,
            queue=self.queue,
            data_dir=workdir / name / "data",
            **{**dict.fromkeys(LIVENESS), **env},
        )
        out = subprocess.run(
            [*MANAGE, "create_api_key", f"{name}@chaos.example", "--credits", str(10**15)],
            env=self.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.secret = out.strip().splitlines()[-1]

    # processes
    def web(self, *, port: int | None = None, wait: bool = True, **options) -> tuple[Process, str]:
        port = port or processes.free_port()
        count = sum(p.name.startswith("web") for p in self.processes) + 1
        web = processes.start_web(
            self.env, port=port, log=self.logs / f"web-{count}.log", **options
        )
        web.name = f"web-{count}"
        self.processes.append(web)
        base = f"http://127.0.0.1:{port}"
        if wait:
            processes.wait_web(base, web)
        return web, base

    def worker(self, *, wait: bool = True, **options) -> Process:
        count = sum(p.name.startswith("worker") for p in self.processes) + 1
        worker = processes.start_worker(self.env, log=self.logs / f"worker-{count}.log", **options)
        worker.name = f"worker-{count}"
        self.processes.append(worker)
        if wait:
            processes.wait_worker(worker)
        return worker

    def close(self) -> None:
        for process in self.processes:
            process.signal(signal.SIGCONT)
            process.signal(signal.SIGTERM)
        for process in self.processes:
            process.stop(30)

    # the client's side
    def session(self) -> requests.Session:
        client = requests.Session()
        client.headers["Authorization"] = f"Bearer {self.secret}"
        return client

    def submit(self, client: requests.Session, base: str, body: dict) -> requests.Response:
        return client.post(
            f"{base}/v1/images/generations",
            json=body,
            headers={"Prefer": "respond-async"},
            timeout=120,
        )

    # the database's side
    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://")) as conn:
            return conn.execute(sql, params).fetchall()

    def states(self, ids: list[str]) -> dict[str, tuple[str, float | None, str, int]]:
        """id -> (status, finished_at as epoch seconds, worker, attempts)."""
        rows = self.query(
            "SELECT id, status, extract(epoch FROM finished_at), worker, attempts "
            "FROM generations_generation WHERE id = ANY(%s)",
            (ids,),
        )
        return {r[0]: (r[1], float(r[2]) if r[2] is not None else None, r[3], r[4]) for r in rows}

    def wait_finished(self, ids: list[str], seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        while True:
            states = self.states(ids)
            done = all(states.get(i, ("?",))[0] in TERMINAL for i in ids)
            if done or time.monotonic() > deadline:
                return states
            time.sleep(0.25)

    def money(self) -> Money:
        rows = self.query(
            """
            SELECT g.status, g.price,
                   count(*) FILTER (WHERE e.kind = 'hold'),
                   count(*) FILTER (WHERE e.kind = 'capture'),
                   coalesce(sum(-e.held) FILTER (WHERE e.kind = 'capture'), 0),
                   coalesce(sum(e.held), 0)
            FROM generations_generation g
            LEFT JOIN accounts_creditentry e ON e.generation_id = g.id
            GROUP BY g.id, g.status, g.price
            """
        )
        money = Money(generations=len(rows))
        for _status, price, holds, captures, captured, still_held in rows:
            if holds > 1 or captures > 1 or captured > price:
                money.charged_twice += 1
            if still_held:
                money.holds_left += 1
        money.held = self.query("SELECT coalesce(sum(credits_held), 0) FROM accounts_organization")[
            0
        ][0]
        reconcile = subprocess.run(
            [*MANAGE, "reconcile_ledger"], env=self.env, cwd=ROOT, capture_output=True, text=True
        )
        money.reconciles = reconcile.returncode == 0
        if not money.reconciles:
            say(f"{self.name}: reconcile_ledger: {reconcile.stderr.strip()[-500:]}")
        return money

    def lose_messages(self) -> int:
        """Delete the queue and whatever is on it (what a broker restart without
        persistence, or an operator's purge, does)."""
        return processes.delete_queue(self.broker_url, self.queue)

    def forget_queue(self) -> None:
        with contextlib.suppress(Exception):
            self.lose_messages()


# --- the faults -------------------------------------------------------------------------------
@dataclass
class Result:
    fault: str
    setup: str
    trials: str
    outcome: str
    lost: int = 0
    money: Money = field(default_factory=Money)
    target_met: bool = True
    recovery: list[float] = field(default_factory=list)


def sigkill_trials(stack: Stack, broker: str, trials: int) -> Result:
    """Two workers; each trial submits 3 jobs, kills -9 the worker running them in the
    middle of their batch, starts a replacement (as an orchestrator would), and times
    the jobs it was running until they succeed on the other worker."""
    web, base = stack.web()
    workers = [stack.worker(wait=False), stack.worker(wait=False)]
    by_name = {processes.worker_name(w): w for w in workers}
    client = stack.session()
    recovery: list[float] = []
    lost = in_flight_total = missed = 0
    trial = 0
    while trial < trials:
        for worker in by_name.values():
            processes.wait_worker(worker)
        # Long enough (a few seconds here) to be caught running.
        ids = [
            stack.submit(client, base, job(trial * 10 + i, steps=20)).json()["id"] for i in range(3)
        ]

        def running_on(ids=ids) -> str | None:
            states = stack.states(ids)
            names = [s[2] for s in states.values() if s[0] == "running"]
            return max(set(names), key=names.count) if names else None

        victim_name = processes.wait_for(running_on, 300, "a job to start", interval=0.05)
        victim = by_name.pop(victim_name)
        victim.signal(signal.SIGSTOP)  # frozen: what it was running can be read first
        in_flight = [
            i for i, s in stack.states(ids).items() if s[0] == "running" and s[2] == victim_name
        ]
        victim.signal(signal.SIGKILL)
        killed_at = time.time()
        victim.wait(30)
        replacement = stack.worker(wait=False)
        by_name[processes.worker_name(replacement)] = replacement
        states = stack.wait_finished(ids, 600)
        if not in_flight:  # it finished its jobs before the signal: not a trial
            missed += 1
            say(f"{broker}: kill came after the jobs finished; again")
            continue
        trial += 1
        in_flight_total += len(in_flight)
        times = [
            states[i][1] - killed_at
            for i in in_flight
            if states[i][0] == "succeeded" and states[i][1] is not None
        ]
        lost += sum(1 for i in ids if states[i][0] != "succeeded")
        recovery += times
        say(
            f"{broker} SIGKILL {trial}/{trials}: {len(in_flight)} job(s) in flight, "
            f"back in {max(times, default=float('nan')):.1f}s, lost so far {lost}"
        )
    money = stack.money()
    result = Result(
        fault="worker SIGKILL mid-batch",
        setup=f"{broker}; 2 workers, 3 jobs per trial, a replacement worker started at the kill",
        trials=f"{trials} kills, {in_flight_total} jobs in flight",
        outcome=(
            f"recovery p50 {pct(recovery, 50):.1f} s, p95 {pct(recovery, 95):.1f} s, "
            f"max {max(recovery):.1f} s"
            if recovery
            else "no job recovered"
        ),
        lost=lost,
        money=money,
        recovery=recovery,
    )
    result.target_met = bool(recovery) and pct(recovery, 95) <= 60 and not lost
    return result


def broker_outage(workdir: Path, database_url: str) -> Result:
    """A private redis-server is the deployment's broker; it stops, 20 requests arrive,
    it starts again (empty) 10 s later."""
    server = RedisServer(workdir / "outage-redis")
    (workdir / "outage-redis").mkdir(parents=True, exist_ok=True)
    server.start()
    stack = Stack("outage", database_url=database_url, broker_url=server.url, workdir=workdir)
    try:
        (web, base), worker = stack.web(wait=False), stack.worker(wait=False)
        processes.wait_web(base, web)
        processes.wait_worker(worker)
        client = stack.session()
        warm = stack.submit(client, base, job(0)).json()["id"]
        stack.wait_finished([warm], 120)
        server.stop()
        answers = [stack.submit(client, base, job(i)) for i in range(1, 21)]
        accepted = [r.json()["id"] for r in answers if r.status_code == 202]
        time.sleep(10)
        server.start()
        back = time.time()
        states = stack.wait_finished(accepted, 600)
        done = [s[1] - back for s in states.values() if s[0] == "succeeded" and s[1]]
        lost = sum(1 for s in states.values() if s[0] != "succeeded")
        statuses = sorted({r.status_code for r in answers})
        say(f"broker outage: {len(accepted)}/20 accepted, lost {lost}")
        money = stack.money()
        return Result(
            fault="broker down at submit",
            setup="private redis-server stopped for 10 s, 20 async requests meanwhile",
            trials="20 requests",
            outcome=(
                f"{len(accepted)} answered 202 (statuses {statuses}); all ran "
                f"{max(done, default=float('nan')):.1f} s after the broker was back"
            ),
            lost=lost + (20 - len(accepted)),
            money=money,
            target_met=not lost and len(accepted) == 20,
        )
    finally:
        stack.close()
        server.stop()


def lost_messages(workdir: Path, database_url: str, broker: str, url: str) -> Result:
    """10 jobs accepted while no worker consumes; the queue is deleted with them; then a
    worker starts."""
    stack = Stack(
        f"lost-{broker.lower()}", database_url=database_url, broker_url=url, workdir=workdir
    )
    try:
        web, base = stack.web()
        client = stack.session()
        submitted = time.time()
        accepted = [stack.submit(client, base, job(i)).json()["id"] for i in range(10)]
        gone = stack.lose_messages()
        stack.worker()
        states = stack.wait_finished(accepted, 600)
        done = [s[1] - submitted for s in states.values() if s[0] == "succeeded" and s[1]]
        lost = sum(1 for s in states.values() if s[0] != "succeeded")
        say(f"{broker} lost messages: {gone} deleted, lost jobs {lost}")
        money = stack.money()
        return Result(
            fault="broker lost the queued messages",
            setup=f"{broker}; queue deleted with 10 messages on it, then a worker started",
            trials="10 jobs",
            outcome=(
                f"{gone} messages deleted; all ran {max(done, default=float('nan')):.1f} s "
                "after submission (sent again 60 s after the first send)"
            ),
            lost=lost,
            money=money,
            target_met=not lost,
        )
    finally:
        stack.forget_queue()
        stack.close()


def database_blips(workdir: Path, database_url: str, blips: int = 5) -> Result:
    """Four clients create and poll jobs while every database connection is terminated,
    `blips` times, 5 s apart."""
    stack = Stack("blip", database_url=database_url, broker_url=REDIS, workdir=workdir)
    try:
        (web, base), worker = stack.web(wait=False, workers=2), stack.worker(wait=False)
        processes.wait_web(base, web)
        processes.wait_worker(worker)
        stop = threading.Event()
        answers: list[tuple[float, int | None, bool]] = []  # (ended, status, JSON)
        ids: list[str] = []
        lock = threading.Lock()

        def call(function: Callable[[], requests.Response]) -> dict | None:
            try:
                response = function()
            except requests.RequestException:
                with lock:
                    answers.append((time.monotonic(), None, False))
                return None
            is_json = response.headers.get("Content-Type", "").startswith("application/json")
            with lock:
                answers.append((time.monotonic(), response.status_code, is_json))
            return response.json() if response.status_code < 300 and is_json else None

        def client_loop(number: int) -> None:
            client = stack.session()
            index = 0
            while not stop.is_set():
                index += 1
                made = call(lambda i=index: stack.submit(client, base, job(number * 1000 + i)))
                if made is None:
                    continue
                with lock:
                    ids.append(made["id"])
                url = f"{base}/v1/images/generations/{made['id']}"
                while not stop.is_set():
                    polled = call(lambda url=url: client.get(url, timeout=60))
                    if polled is not None and polled["status"] in TERMINAL:
                        break
                    time.sleep(0.1)

        threads = [threading.Thread(target=client_loop, args=(n,), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        import psycopg

        times = []
        with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
            conn.autocommit = True
            for _ in range(blips):
                time.sleep(5)
                times.append(time.monotonic())
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        time.sleep(5)
        stop.set()
        for thread in threads:
            thread.join(120)
        failed = [a for a in answers if a[1] is None or a[1] >= 400]
        per_blip = [
            sum(1 for a in failed if start <= a[0] < end)
            for start, end in zip(times, [*times[1:], float("inf")], strict=True)
        ]
        not_json = sum(1 for a in answers if not a[2])
        states = stack.wait_finished(ids, 600)
        stuck = sum(1 for s in states.values() if s[0] not in TERMINAL)
        lost = sum(1 for s in states.values() if s[0] != "succeeded")
        say(f"database blips: failed requests per blip {per_blip}, stuck {stuck}")
        money = stack.money()
        return Result(
            fault="database blip (pg_terminate_backend of every connection)",
            setup="4 clients creating and polling, jobs running; 2 web processes, 1 worker",
            trials=f"{blips} blips, {len(answers)} requests, {len(ids)} jobs",
            outcome=(
                f"failed requests per blip: max {max(per_blip)}, total {len(failed)}; "
                f"answers not JSON: {not_json}; jobs stuck: {stuck}"
            ),
            lost=lost,
            money=money,
            target_met=max(per_blip) <= 1 and not stuck and not not_json and not lost,
        )
    finally:
        stack.close()


def web_restart(workdir: Path, database_url: str, *, graceful: int, clients: int = 50) -> Result:
    """`clients` sync requests (each with its own Idempotency-Key) waiting for their
    images; SIGTERM to the web server once all are accepted; a new server on the same
    port; whoever was cut off retries with the same key and body."""
    name = f"restart-{graceful}s"
    stack = Stack(name, database_url=database_url, broker_url=REDIS, workdir=workdir)
    try:
        port = processes.free_port()
        (web, base), worker = (
            stack.web(port=port, wait=False, threads=64, graceful_timeout=graceful),
            stack.worker(wait=False),
        )
        processes.wait_web(base, web)
        processes.wait_worker(worker)
        keys = [str(uuid.uuid4()) for _ in range(clients)]
        first: dict[str, requests.Response | Exception] = {}

        def wait_for_images(key: str, index: int, into: dict) -> None:
            client = stack.session()
            client.headers["Connection"] = "close"
            try:
                into[key] = client.post(
                    f"{base}/v1/images/generations",
                    json=job(index, size=128, steps=12),
                    headers={"Idempotency-Key": key},
                    timeout=400,
                )
            except requests.RequestException as exc:
                into[key] = exc

        threads = [
            threading.Thread(target=wait_for_images, args=(key, i, first), daemon=True)
            for i, key in enumerate(keys)
        ]
        for thread in threads:
            thread.start()
        processes.wait_for(
            lambda: stack.query("SELECT count(*) FROM accounts_idempotencykey")[0][0] == clients,
            120,
            "every request to be accepted",
        )
        waiting = stack.query(
            "SELECT count(*) FROM generations_generation WHERE status IN ('queued', 'running')"
        )[0][0]
        web.signal(signal.SIGTERM)
        for thread in threads:
            thread.join(400)
        web.wait(400)

        def got_images(answer) -> bool:
            return (
                isinstance(answer, requests.Response)
                and answer.status_code == 200
                and len(answer.json().get("data", [])) == 1
            )

        cut = [key for key in keys if not got_images(first[key])]
        retried: dict[str, requests.Response | Exception] = {}
        if cut:
            web, base = stack.web(port=port, threads=64)
            threads = [
                threading.Thread(
                    target=wait_for_images, args=(key, keys.index(key), retried), daemon=True
                )
                for key in cut
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(400)
        images = sum(1 for key in keys if got_images(first[key]))
        after_retry = sum(1 for key in cut if got_images(retried.get(key)))
        generations = stack.query("SELECT count(*) FROM generations_generation")[0][0]
        stack.wait_finished(
            [r[0] for r in stack.query("SELECT id FROM generations_generation")], 600
        )
        charged_without_images = stack.query(
            "SELECT count(*) FROM generations_generation WHERE charged > 0"
        )[0][0] - (images + after_retry)
        say(
            f"web restart (graceful {graceful}s): {images}/{clients} got images, "
            f"{len(cut)} cut off, {after_retry} got them on retry"
        )
        money = stack.money()
        return Result(
            fault=f"web restart (SIGTERM), graceful timeout {graceful} s",
            setup=f"{clients} clients in sync waits, Idempotency-Key on each; {waiting} still "
            "waiting at the signal",
            trials=f"{clients} sync waits",
            outcome=(
                f"{images} got their images; {len(cut)} cut off, of which {after_retry} got "
                f"them on retry with the same key; {generations} generations for "
                f"{clients} clients; charged without images: {max(0, charged_without_images)}"
            ),
            lost=clients - images - after_retry,
            money=money,
            target_met=images + after_retry == clients and generations == clients,
        )
    finally:
        stack.close()


# --- the run ---------------------------------------------------------------------------------
def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = f" ({line.split(':', 1)[1].strip()})"
                break
    return f"{os.cpu_count()}-core CPU VM{cpu}, no GPU"


def report(results: list[Result], *, trials: int, minutes: float) -> str:
    lines = [
        SECTION,
        "",
        f"Machine: {machine()}, shared with other work. Measured "
        f"{dt.date.today().isoformat()} with `make chaos` (`.venv/bin/python -m "
        f"tests.chaos_bench --trials {trials} --out BENCHMARKS.md`), in {minutes:.0f} min.",
        "",
        "Default liveness settings: heartbeat every 5 s, takeover after 20 s of silence, a "
        "recovery pass every 5 s in every worker, a queued job's message sent again 60 s "
        "after the last send, 3 attempts. PostgreSQL, gunicorn (gthread) and "
        "`manage.py runworker` processes, demo-sd jobs submitted over HTTP; every fault "
        "has a deployment (database, queue, processes) of its own.",
        "",
        "| fault | set-up | trials | outcome | jobs lost | charged twice | holds left "
        "| ledger | target met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        met = r.target_met and r.money.clean()
        lines.append(
            f"| {r.fault} | {r.setup} | {r.trials} | {r.outcome} | {r.lost} | "
            f"{r.money.charged_twice} | {r.money.holds_left} | "
            f"{'reconciles' if r.money.reconciles else 'MISMATCH'} | {'yes' if met else 'NO'} |"
        )
    lines += [
        "",
        "Recovery time: from the SIGKILL to the job's `succeeded`, for every job the killed "
        "worker was running: at most the takeover time (20 s) since its last heartbeat, "
        "plus up to one recovery pass (5 s), plus the job run again on another worker. "
        "Targets (issue 10): 0 jobs lost, 0 charged twice, 0 holds left; recovery p95 ≤ 60 s; "
        "at most 1 failed request per database blip; every client of a restarted web "
        "server gets its images or is not charged, and a retry with the same "
        "Idempotency-Key charges once.",
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="imagehub fault-injection benchmark")
    parser.add_argument("--trials", type=int, default=20, help="SIGKILL trials per broker")
    parser.add_argument("--out", type=Path, help="write the results into this Markdown file")
    args = parser.parse_args()
    needs = {"PostgreSQL": 5432, "Redis": 6379, "RabbitMQ": 5672}
    missing = [name for name, port in needs.items() if not processes.reachable(port)]
    if missing or shutil.which("redis-server") is None:
        sys.exit(f"make chaos needs {', '.join(missing or ['redis-server'])} on this machine")
    workdir = Path(tempfile.mkdtemp(prefix="imagehub-chaos-"))
    say(f"logs in {workdir}")
    databases = Databases()
    stacks: list[Stack] = []
    results: dict[str, Result] = {}
    errors: list[str] = []
    try:
        databases.prepare(workdir)
        urls = {
            name: databases.clone(name)
            for name in (
                "kill_redis",
                "kill_rabbitmq",
                "outage",
                "lost_redis",
                "lost_rabbitmq",
                "blip",
                "restart",
                "restart_hard",
            )
        }

        def run(label: str, function: Callable[[], Result]) -> None:
            try:
                results[label] = function()
            except Exception:  # noqa: BLE001 - one fault's failure must not hide the others
                errors.append(f"{label}: {traceback.format_exc()}")
                say(f"{label} failed:\n{traceback.format_exc()}")

        def kills(broker: str, url: str, database: str) -> Result:
            stack = Stack(
                f"kill-{broker.lower()}", database_url=database, broker_url=url, workdir=workdir
            )
            stacks.append(stack)
            try:
                return sigkill_trials(stack, broker, args.trials)
            finally:
                stack.forget_queue()
                stack.close()

        def the_others() -> None:
            run("outage", lambda: broker_outage(workdir, urls["outage"]))
            run("lost_redis", lambda: lost_messages(workdir, urls["lost_redis"], "Redis", REDIS))
            run(
                "lost_rabbitmq",
                lambda: lost_messages(workdir, urls["lost_rabbitmq"], "RabbitMQ", RABBITMQ),
            )
            run("blip", lambda: database_blips(workdir, urls["blip"]))
            run("restart", lambda: web_restart(workdir, urls["restart"], graceful=330))
            run("restart_hard", lambda: web_restart(workdir, urls["restart_hard"], graceful=1))

        threads = [
            threading.Thread(
                target=run,
                args=("kill_redis", lambda: kills("Redis", REDIS, urls["kill_redis"])),
            ),
            threading.Thread(
                target=run,
                args=(
                    "kill_rabbitmq",
                    lambda: kills("RabbitMQ", RABBITMQ, urls["kill_rabbitmq"]),
                ),
            ),
            threading.Thread(target=the_others),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        databases.drop()
    order = [
        "kill_redis",
        "kill_rabbitmq",
        "outage",
        "lost_redis",
        "lost_rabbitmq",
        "blip",
        "restart",
        "restart_hard",
    ]
    section = report(
        [results[k] for k in order if k in results],
        trials=args.trials,
        minutes=(time.monotonic() - STARTED) / 60,
    )
    print(section)
    if errors:
        print("\n".join(errors), file=sys.stderr)
    if args.out and not errors:
        write_section(args.out, section)
        say(f"wrote the '{SECTION}' section of {args.out}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
