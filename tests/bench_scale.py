"""The everyday requests on an empty database and on a busy deployment's 90 days.

Two PostgreSQL databases of their own: one migrated and all but empty, one seeded in SQL
to the volumes of issue 24 times `--scale` (tests/scale_seed.py). Against each, a real
gunicorn web process (Redis broker, no worker: created jobs stay queued) answers the
requests of the table, `--requests` times each, for the biggest tenant and a small one
beside it; the operator dashboard at 30 and 90 days; then `manage.py reconcile_ledger`
runs with its time and peak memory. Both databases are dropped at the end.

    python -m tests.bench_scale [--scale 1.0] [--requests 60] [--out BENCHMARKS.md]

`make bench-scale` runs it with the issue's volumes. Needs PostgreSQL and redis-server
on 127.0.0.1.
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


def p50_ms(call, times: int) -> float:
    call()  # a first call warms caches, connections, summaries
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _get(base: str, path: str, *, key: str | None = None, session: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    cookies = {"sessionid": session} if session else {}

    def call():
        response = requests.get(f"{base}{path}", headers=headers, cookies=cookies, timeout=60)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response

    return call


def measure(base: str, who: dict, targets: dict, times: int) -> dict[str, float]:
    """p50 (ms) of each tenant request for one tenant."""
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

    results = {"create (async)": p50_ms(create, times)}
    path = "/v1/images/generations/"
    results["poll, queued"] = p50_ms(_get(base, path + created[0], key=key), times)
    results["poll, running"] = p50_ms(_get(base, path + targets["running"], key=key), times)
    results["poll, succeeded"] = p50_ms(_get(base, path + targets["done"], key=key), times)
    results["list (20)"] = p50_ms(_get(base, "/v1/images/generations?limit=20", key=key), times)
    results["/v1/credits"] = p50_ms(_get(base, "/v1/credits", key=key), times)
    results["/v1/usage (30 days)"] = p50_ms(_get(base, "/v1/usage", key=key), times)
    results["/usage/ page"] = p50_ms(_get(base, "/usage/", session=who["session"]), times)
    return results


def dashboard(base: str, staff: str, times: int) -> dict[str, float]:
    today = datetime.now(UTC).date()
    out = {}
    for days in (30, 90):
        start = (today - timedelta(days=days - 1)).isoformat()
        path = f"/dashboard/?start={start}&end={today.isoformat()}"
        out[f"/dashboard/ ({days} days)"] = p50_ms(_get(base, path, session=staff), times)
    return out


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
    "credits (spent this month, one key)": (
        "SELECT sum(credits) FROM accounts_usagerollup WHERE organization_id = {org} "
        "AND api_key_id = {key} AND hour >= date_trunc('month', now())",
        "CREATE INDEX scale_old_hour ON accounts_usagerollup (hour); "
        "DROP INDEX usage_rollup_hour_brin; ANALYZE accounts_usagerollup",
    ),
}


def _plan(conn, sql: str) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql).fetchall()
    lines = [r[0].strip() for r in rows]
    total = next((line for line in lines if line.startswith("Execution Time")), "")
    nodes = [line for line in lines if "->" in line or line == lines[0]]
    return f"{' / '.join(nodes)[:240]} — {total}"


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


def run_one(label: str, volumes: scale_seed.Volumes | None, broker: str, work: Path, times: int):
    db = Database(label)
    data = work / label
    data.mkdir()
    env = server_env(
        database_url=db.url, broker_url=broker, queue=f"scale-{uuid.uuid4().hex[:6]}",
        data_dir=data, IMAGEHUB_WARMUP_MODELS=None,
    )  # fmt: skip
    try:
        made = db.create(env)
        targets = {
            who: scale_seed.seed_targets(db.dsn, org=made[who]["org"], key=made[who]["key_id"])
            for who in ("big", "small")
        }
        started = time.monotonic()
        counts = scale_seed.seed(
            db.dsn,
            volumes or scale_seed.Volumes(scale=0),
            big_org=made["big"]["org"], big_key=made["big"]["key_id"],
            small_org=made["small"]["org"], small_key=made["small"]["key_id"],
        )  # fmt: skip
        counts["seconds"] = round(time.monotonic() - started)
        print(f"{label}: seeded {counts}", flush=True)
        port = free_port()
        web = start_web(env, port=port, log=work / f"{label}-web.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_web(base, web)
            results = {
                who: measure(base, made[who], targets[who], times) for who in ("big", "small")
            }
            results["operator"] = dashboard(base, made["staff"], times)
        finally:
            web.stop()
        results["reconcile"] = reconcile(env)
        results["explain"] = explain(db.dsn, made["big"]["org"], made["big"]["key_id"])
        results["counts"] = counts
        return results
    finally:
        db.drop()


def report(empty: dict, full: dict, volumes: scale_seed.Volumes, times: int) -> str:
    from tests.bench import machine

    counts = full["counts"]
    lines = [
        "## Scale: a busy deployment's 90 days (make bench-scale)",
        "",
        f"Machine: {machine()}; PostgreSQL 15 on the same host, shared with other "
        f"engineers' test runs. Measured {datetime.now(UTC):%Y-%m-%d} with "
        f"`.venv/bin/python -m tests.bench_scale --scale {volumes.scale:g} --requests {times}` "
        "(`make bench-scale` runs `--scale 1`, the volumes of issue 24).",
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
        "tenants, keys and the two polled generations. One gunicorn web process (gthread), "
        f"Redis broker, no worker; p50 of {times} requests after one warm-up.",
        "",
        "| request | empty p50 (ms) | full, big tenant (ms) | full, small tenant (ms) | "
        "ratio big / small |",
        "|---|---|---|---|---|",
    ]
    for name in empty["big"]:
        e = empty["big"][name]
        b, s = full["big"][name], full["small"][name]
        e_small = empty["small"][name]
        lines.append(
            f"| {name} | {e:.1f} / {e_small:.1f} | {b:.1f} | {s:.1f} | "
            f"{b / e:.2f}× / {s / e_small:.2f}× |"
        )
    for name, e in empty["operator"].items():
        f = full["operator"][name]
        lines.append(f"| {name}, operator | {e:.1f} | {f:.1f} | — | {f / e:.2f}× |")
    (es, em, _), (fs, fm, last) = empty["reconcile"], full["reconcile"]
    lines += [
        f"| `manage.py reconcile_ledger` | {es:.1f} s, {em:.0f} MiB | {fs:.1f} s, {fm:.0f} MiB "
        "| — | — |",
        "",
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
            empty = run_one("empty", None, redis.url, work, args.requests)
            full = run_one("full", volumes, redis.url, work, args.requests)
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
