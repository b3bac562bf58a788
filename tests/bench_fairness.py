"""Fair share, measured: tenant A holds a backlog of queued jobs on one model, tenant B
submits one; how long does B's job wait?

    .venv/bin/python -m tests.bench_fairness [--backlog 500] [--out BENCHMARKS.md]

Runs the real services and the embedded worker (8 threads, batching on, the demo-sd
model at 64x64, 2 steps) against a scratch PostgreSQL database (created and dropped):
A's backlog and B's job are queued while no worker runs, then the worker starts. It
reports how many jobs and batches started before B's, against the batch size and time.
The same scenario ran first come, first served before fair share: B would start after
all of A's jobs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import uuid
from pathlib import Path

ADMIN_DB = "postgresql://postgres@127.0.0.1/postgres"
SECTION = "## Fair share (make bench-fairness)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=500)
    parser.add_argument("--out", help="write the results into this Markdown file")
    args = parser.parse_args()
    import psycopg

    name = f"imagehub_fairness_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "imagehub.settings"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    os.environ.setdefault("IMAGEHUB_BATCHING", "1")
    os.environ.setdefault("IMAGEHUB_INPROCESS_WORKERS", "8")
    try:
        result = _measure(args.backlog)
    finally:
        from django.db import connections

        connections.close_all()
        for connection in connections.all():
            if getattr(connection, "pool", None):
                connection.close_pool()
        with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    lines = _report(result)
    print("\n".join(lines))
    if args.out:
        _write(Path(args.out), lines)


def _measure(backlog: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("build_demo_models", verbosity=0)
    from tqdm import tqdm

    from accounts.ledger import credits_top_up
    from accounts.services import api_key_create, organization_create, user_get_or_create
    from generations import services
    from generations.catalog import get_model
    from generations.models import Generation
    from generations.types import GenerationRequest
    from generations.worker import embedded
    from generations.worker.runtime import batcher, warm_up

    warm_up(["demo-sd"])
    request = GenerationRequest(
        spec=get_model("demo-sd"),
        prompt="backlog",
        negative_prompt="",
        n=1,
        width=64,
        height=64,
        steps=2,
        guidance_scale=5.0,
        quality="auto",
        response_format="b64_json",
        output_format="png",
    )
    tenants = {}
    for label in ("a", "b"):
        user, _ = user_get_or_create(email=f"{label}@fairness.example")
        org = organization_create(name=f"tenant-{label}", owner=user)
        credits_top_up(organization=org, amount=10**12)
        key, _ = api_key_create(organization=org, created_by=user)
        tenants[label] = (org, key)
    with embedded.paused():  # queue everything while no worker runs
        org, key = tenants["a"]
        for _ in tqdm(range(backlog), desc="tenant A's backlog", unit="job"):
            services.generation_create(order=request, organization=org, api_key=key)
        org, key = tenants["b"]
        lone = services.generation_create(order=request, organization=org, api_key=key)
    history = batcher().history
    calls_before = len(history)
    started = time.monotonic()
    embedded.ensure_started()
    for generation in Generation.objects.filter(status="queued").order_by("created_at"):
        services.generation_dispatch(generation_id=generation.id, model=generation.model)
    while Generation.objects.filter(pk=lone.pk, started_at__isnull=True).exists():
        time.sleep(0.01)
    waited = time.monotonic() - started
    lone.refresh_from_db()
    ahead = Generation.objects.filter(started_at__lt=lone.started_at).count()
    while not Generation.objects.get(pk=lone.pk).is_finished:
        time.sleep(0.01)
    embedded.stop()
    batches = list(history)[calls_before:]
    for generation in Generation.objects.filter(status="queued"):
        services.generation_cancel(generation=generation)
    return {
        "backlog": backlog,
        "ahead": ahead,
        "waited": waited,
        "batch_images": statistics.median([b.images for b in batches]) if batches else 0,
        "batch_seconds": statistics.median([b.seconds for b in batches]) if batches else 0,
        "threads": settings.INPROCESS_WORKER_THREADS,
    }


def _report(r: dict) -> list[str]:
    batches_ahead = r["ahead"] / r["batch_images"] if r["batch_images"] else float("nan")
    return [
        SECTION,
        "",
        f"Tenant A queues {r['backlog']} jobs on one model, then tenant B queues one; one "
        f"worker process ({r['threads']} threads, batching on) starts. demo-sd, 64x64, 2 "
        "steps, on this machine (2-core CPU VM, no GPU), PostgreSQL. Command: "
        f"`make bench-fairness` (`.venv/bin/python -m tests.bench_fairness --backlog "
        f"{r['backlog']} --out BENCHMARKS.md`).",
        "",
        "| what | value |",
        "|---|---|",
        f"| jobs that started before B's | {r['ahead']} (first come, first served: "
        f"{r['backlog']}) |",
        f"| batches before B's (median batch {r['batch_images']:g} images) | {batches_ahead:.1f} |",
        f"| B's wait from the worker's start | {r['waited']:.2f} s (median batch "
        f"{r['batch_seconds']:.3f} s) |",
        "",
        "Target: B starts within 2 batch times of the next device slot.",
    ]


def _write(path: Path, lines: list[str]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = "\n".join(lines) + "\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(block + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)


if __name__ == "__main__":
    main()
