"""The everyday requests on an empty database and on a busy deployment's 90 days.

Two PostgreSQL databases of their own: one migrated and all but empty, one seeded in SQL
to the volumes of issue 24 times `--scale` (tests/scale_seed.py: about two minutes at
scale 1 on 2 cores). Each gets a real gunicorn web process (Redis broker, no worker:
created jobs stay queued); the two answer the requests of the table side by side, taking
turns request by request, `--requests` rounds each, for the biggest tenant and a small
one beside it, then the operator dashboard at 30 and 90 days; then `manage.py
reconcile_ledger` runs on each with its time and peak memory. Both databases are dropped
at the end.

    python -m tests.bench_scale [--scale 1.0] [--requests 60] [--out BENCHMARKS.md]

`make bench-scale` runs it with the issue's volumes (`SCALE=0.2` for a fifth). Needs
PostgreSQL and redis-server on 127.0.0.1, and about 5 GB of disk at scale 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import requests

from tests import scale_seed
from tests.processes import (
    MANAGE,
    ROOT,
    RedisServer,
    free_port,
    server_env,
    start_web,
    wait_web,
)

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

PROVISION = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from accounts.models import User
from accounts.services import api_key_provision

def session(user):
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return store.session_key

out = {}
for label in ("big", "small"):
    made = api_key_provision(email=f"{label}@example.com", organization_name=f"{label} tenant",
                             credits=0, name="bench", scope="generate")
    out[label] = {"org": made.organization.pk, "key_id": made.key.pk, "secret": made.secret,
                  "session": session(made.user)}
staff = User.objects.create_superuser(email="ops@example.com", password=None)
out["staff"] = session(staff)
print("PROVISIONED " + json.dumps(out))
"""


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)


class Database:
    def __init__(self, label: str):
        self.name = f"imagehub_scale_{label}_{uuid.uuid4().hex[:8]}"
        self.dsn = f"postgresql://postgres@127.0.0.1:5432/{self.name}"
        self.url = f"postgres://postgres@127.0.0.1:5432/{self.name}"

    def create(self, env: dict) -> dict:
        _admin(f'CREATE DATABASE "{self.name}"')
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True)
        shell = subprocess.run(
            [*MANAGE, "shell", "-c", PROVISION],
            env=env, cwd=ROOT, check=True, capture_output=True, text=True,
        )  # fmt: skip
        line = next(x for x in shell.stdout.splitlines() if x.startswith("PROVISIONED "))
        return json.loads(line.removeprefix("PROVISIONED "))

    def drop(self) -> None:
        _admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def side_by_side(calls: dict[str, Callable[[], object]], times: int) -> dict[str, list[float]]:
    """Each side's call `times` times, the sides taking turns (the order swapped every
    round), so that whatever else loads the machine weighs on both alike; ms per call,
    after one warm-up call each (caches, connections, summaries)."""
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {side: [] for side in calls}
    for round_ in range(times):
        order = list(calls.items())
        for side, call in order[::-1] if round_ % 2 else order:
            start = time.perf_counter()
            call()
            samples[side].append((time.perf_counter() - start) * 1000)
    return samples


def _get(base: str, path: str, *, key: str | None = None, session: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    cookies = {"sessionid": session} if session else {}

    def call():
        response = requests.get(f"{base}{path}", headers=headers, cookies=cookies, timeout=60)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response

    return call


def tenant_calls(base: str, who: dict, targets: dict) -> dict[str, Callable[[], object]]:
    """The tenant requests of the table, for one tenant of one deployment."""
    key = who["secret"]
    created: list[str] = []

    def create():
        response = requests.post(
            f"{base}/v1/images/generations",
            json={"prompt": "a lighthouse", "size": "64x64", "num_inference_steps": 2},
            headers={"Authorization": f"Bearer {key}", "Prefer": "respond-async"},
            timeout=60,
        )
        assert response.status_code in (200, 202), response.text[:300]
        created.append(response.json()["id"])

    path = "/v1/images/generations/"
    return {
        "create (async)": create,
        # The job the warm-up create made, queued (no worker runs).
        "poll, queued": lambda: _get(base, path + created[0], key=key)(),
        "poll, running": _get(base, path + targets["running"], key=key),
        "poll, succeeded": _get(base, path + targets["done"], key=key),
        "list (20)": _get(base, "/v1/images/generations?limit=20", key=key),
        "/v1/credits": _get(base, "/v1/credits", key=key),
        "/v1/usage (30 days)": _get(base, "/v1/usage", key=key),
        "/usage/ page": _get(base, "/usage/", session=who["session"]),
        "webhook deliveries (20)": _get(
            base, "/v1/webhook/deliveries?limit=20", session=who["session"]
        ),
    }


def dashboard_calls(base: str, staff: str) -> dict[str, Callable[[], object]]:
    today = datetime.now(UTC).date()
    calls = {}
    for days in (30, 90):
        start = (today - timedelta(days=days - 1)).isoformat()
        path = f"/dashboard/?start={start}&end={today.isoformat()}"
        calls[f"/dashboard/ ({days} days)"] = _get(base, path, session=staff)
    return calls


def reconcile(env: dict) -> tuple[float, float, str]:
    """Seconds, peak memory (MiB) and the last line of `manage.py reconcile_ledger`."""
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS %M", *MANAGE, "reconcile_ledger", "--no-progress"],
        env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    rss = next(
        int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("MAXRSS")
    )
    last = (done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or [""])[-1]
    return seconds, rss / 1024, last


# The hot queries, and the index change that makes each one cheap: undone inside a
# rolled-back transaction (PostgreSQL DDL is transactional) for the "before" plan.
HOT_QUERIES = {
    "queue pace (estimated_start)": (
        "SELECT count(id), min(finished_at) FROM generations_generation WHERE "
        "model IN ('demo-sd') AND status = 'succeeded' AND "
        "finished_at >= now() - interval '10 minutes'",
        "DROP INDEX generation_succeeded",
    ),
    "usage page (a tenant's 30 days by day and model)": (
        "SELECT date_trunc('day', hour AT TIME ZONE 'UTC'), model, sum(credits), sum(images) "
        "FROM accounts_usagerollup WHERE organization_id = {org} "
        "AND hour >= now() - interval '30 days' GROUP BY 1, 2",
        "DROP INDEX usage_rollup_tenant_hours; "
        "CREATE INDEX scale_old_tenant ON accounts_usagerollup (organization_id, hour); "
        "CREATE INDEX scale_old_org ON accounts_usagerollup (organization_id); "
        "CREATE INDEX scale_old_key ON accounts_usagerollup (api_key_id); "
        "ANALYZE accounts_usagerollup",
    ),
    "webhook deliveries (a tenant without any, newest 21)": (
        "SELECT id FROM accounts_webhookdelivery WHERE organization_id = 0 "
        "ORDER BY id DESC LIMIT 21",
        "DROP INDEX webhook_delivery_list; "
        "CREATE INDEX scale_old_list ON accounts_webhookdelivery "
        "(organization_id, created_at DESC); "
        "CREATE INDEX scale_old_org ON accounts_webhookdelivery (organization_id)",
    ),
    "dashboard recovery counts (24 h)": (
        "SELECT count(*) FILTER (WHERE recoveries > 0), count(*) FILTER (WHERE dispatches > 1) "
        "FROM generations_generation WHERE (recoveries > 0 OR dispatches > 1 OR "
        "error_code = 'worker_lost') AND created_at >= now() - interval '1 day'",
        "DROP INDEX generation_incidents",
    ),
}


def _plan(conn, sql: str) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql).fetchall()
    lines = [r[0].strip() for r in rows]
    total = next((line for line in lines if line.startswith("Execution Time")), "")
    pages = next((line for line in lines if line.startswith("Buffers:")), "Buffers: none")
    nodes = [line for line in lines if "->" in line or line == lines[0]]
    return f"{' / '.join(nodes)[:240]} — {pages}, {total}"


def explain(dsn: str, org: int, key: int) -> dict[str, tuple[str, str]]:
    """EXPLAIN ANALYZE of each hot query before (index change undone) and after."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for name, (template, undo) in HOT_QUERIES.items():
            sql = template.format(org=org, key=key)
            after = _plan(conn, sql)
            conn.rollback()
            for statement in undo.split("; "):
                conn.execute(statement)
            before = _plan(conn, sql)
            conn.rollback()
            out[name] = (before, after)
    return out


class Deployment:
    """One database (migrated, provisioned, seeded) and its web process."""

    def __init__(self, label: str, broker: str, work: Path):
        self.label = label
        self.db = Database(label)
        self.data = work / label
        self.data.mkdir()
        self.work = work
        self.env = server_env(
            database_url=self.db.url, broker_url=broker, queue=f"scale-{uuid.uuid4().hex[:6]}",
            data_dir=self.data, IMAGEHUB_WARMUP_MODELS=None,
        )  # fmt: skip
        self.web = None

    def prepare(self, volumes: scale_seed.Volumes | None) -> dict:
        self.made = made = self.db.create(self.env)
        self.targets = {
            who: scale_seed.seed_targets(self.db.dsn, org=made[who]["org"], key=made[who]["key_id"])
            for who in ("big", "small")
        }
        started = time.monotonic()
        self.counts = scale_seed.seed(
            self.db.dsn,
            volumes or scale_seed.Volumes(scale=0),
            big_org=made["big"]["org"], big_key=made["big"]["key_id"],
            small_org=made["small"]["org"], small_key=made["small"]["key_id"],
        )  # fmt: skip
        self.counts["seconds"] = round(time.monotonic() - started)
        print(f"{self.label}: seeded {self.counts}", flush=True)
        return self.counts

    def start(self) -> str:
        port = free_port()
        self.web = start_web(self.env, port=port, log=self.work / f"{self.label}-web.log")
        self.base = f"http://127.0.0.1:{port}"
        wait_web(self.base, self.web)
        return self.base

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
            self.web = None


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def measure_side_by_side(empty: Deployment, full: Deployment, times: int) -> dict:
    """{side: {"big"|"small"|"operator": {request: [ms, ...]}}}, the two deployments
    taking turns on every request."""
    out: dict = {"empty": {}, "full": {}, "load": [load()]}
    for who in ("big", "small"):
        sides = {d.label: tenant_calls(d.base, d.made[who], d.targets[who]) for d in (empty, full)}
        for side in sides:
            out[side][who] = {}
        for name in sides["empty"]:
            samples = side_by_side({side: calls[name] for side, calls in sides.items()}, times)
            for side, values in samples.items():
                out[side][who][name] = values
        out["load"].append(load())
    sides = {d.label: dashboard_calls(d.base, d.made["staff"]) for d in (empty, full)}
    for side in sides:
        out[side]["operator"] = {}
    for name in sides["empty"]:
        samples = side_by_side({side: calls[name] for side, calls in sides.items()}, times)
        for side, values in samples.items():
            out[side]["operator"][name] = values
    out["load"].append(load())
    return out


def run(volumes: scale_seed.Volumes, broker: str, work: Path, times: int) -> tuple[dict, dict]:
    empty, full = Deployment("empty", broker, work), Deployment("full", broker, work)
    try:
        empty.prepare(None)
        full.prepare(volumes)
        try:
            empty.start()
            full.start()
            measured = measure_side_by_side(empty, full, times)
        finally:
            empty.stop()
            full.stop()
        results = {}
        for d in (empty, full):
            results[d.label] = {
                **measured[d.label],
                "reconcile": reconcile(d.env),
                "counts": d.counts,
            }
        results["full"]["explain"] = explain(
            full.db.dsn, full.made["big"]["org"], full.made["big"]["key_id"]
        )
        results["full"]["load"] = measured["load"]
        return results["empty"], results["full"]
    finally:
        empty.db.drop()
        full.db.drop()


def p50(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """p10-p90 of the samples, ms."""
    ordered = sorted(values)
    return f"{ordered[len(ordered) // 10]:.0f}–{ordered[(len(ordered) * 9) // 10]:.0f}"


def report(empty: dict, full: dict, volumes: scale_seed.Volumes, times: int) -> str:
    from tests.bench import machine

    counts = full["counts"]
    lines = [
        "## Scale: a busy deployment's 90 days (make bench-scale)",
        "",
        f"Machine: {machine()}; PostgreSQL 15 on the same host, shared with other "
        f"engineers' test runs (1-minute load average during the run: "
        f"{' → '.join(full['load'])}). Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`.venv/bin/python -m tests.bench_scale --scale {volumes.scale:g} --requests {times}` "
        "(`make bench-scale` runs `--scale 1`, the volumes of issue 24; `SCALE=0.2` for a "
        "smaller run).",
        "",
        f"Full database (scale {volumes.scale:g} of issue 24's volumes, seeded in SQL in "
        f"{counts['seconds']} s, {counts['size']}): "
        f"{counts['generations_generation']:,} generations (one tenant "
        f"{volumes.big:,}, {volumes.small_tenants} with {volumes.small_each:,}), "
        f"{counts['generations_generatedimage']:,} images, "
        f"{counts['accounts_creditentry']:,} ledger entries, "
        f"{counts['accounts_usagerollup']:,} hourly rollups, "
        f"{counts['accounts_webhookdelivery']:,} webhook deliveries "
        f"({volumes.delivery_body_bytes:,}-byte bodies). The empty database holds the same "
        "tenants, keys and the two polled generations. Each database has its own gunicorn "
        "web process (gthread), Redis broker, no worker. Side by side: for every request "
        f"the two take turns, {times} rounds after one warm-up each, the order swapped every "
        "round, so the machine's load weighs on both alike; p50 in ms.",
        "",
        "| request | empty p50 (ms), big / small | full, big tenant (ms) | "
        "full, small tenant (ms) | ratio big / small |",
        "|---|---|---|---|---|",
    ]
    worst = 0.0
    for name in empty["big"]:
        e, e_small = p50(empty["big"][name]), p50(empty["small"][name])
        b, s = p50(full["big"][name]), p50(full["small"][name])
        worst = max(worst, b / e, s / e_small)
        lines.append(
            f"| {name} | {e:.1f} / {e_small:.1f} | {b:.1f} | {s:.1f} | "
            f"{b / e:.2f}× / {s / e_small:.2f}× |"
        )
    for name, samples in empty["operator"].items():
        e, f = p50(samples), p50(full["operator"][name])
        lines.append(
            f"| {name}, operator | {e:.1f} (p10–p90 {spread(samples)}) | {f:.1f} "
            f"(p10–p90 {spread(full['operator'][name])}) | — | {f / e:.2f}× |"
        )
    (es, em, _), (fs, fm, last) = empty["reconcile"], full["reconcile"]
    lines += [
        f"| `manage.py reconcile_ledger` | {es:.1f} s, {em:.0f} MiB | {fs:.1f} s, {fm:.0f} MiB "
        "| — | — |",
        "",
        f"Largest ratio of a tenant request: {worst:.2f}× (target ≤ 1.5×). "
        f"reconcile_ledger on the full database said: `{last}`.",
        "",
        "Plans of the hot queries on the full database, big tenant (EXPLAIN ANALYZE; "
        "'before' undoes this branch's index change in a rolled-back transaction):",
        "",
    ]
    for name, (before, after) in full["explain"].items():
        lines += [f"- {name}, before: `{before}`", f"- {name}, after: `{after}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="times issue 24's volumes")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--body-bytes", type=int, default=2048, help="webhook delivery bodies")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    volumes = scale_seed.Volumes(scale=args.scale, delivery_body_bytes=args.body_bytes)
    with tempfile.TemporaryDirectory(prefix="imagehub-scale-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work)
        redis.start()
        try:
            empty, full = run(volumes, redis.url, work, args.requests)
        finally:
            redis.stop()
    text = report(empty, full, volumes, args.requests)
    print(text)
    if args.out:
        from tests.benchfile import merge_report

        merge_report(args.out, text)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
    sys.exit(main())
