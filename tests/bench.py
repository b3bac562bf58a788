"""Latency of one demo-model request through the whole API against a bare `pipe()` call.

    .venv/bin/python -m tests.bench [--runs 20] [--size 256x256] [--steps 4] [--model demo-sd]
                                    [--stack embedded|redis] [--out BENCHMARKS.md]

"bare": one process, DiffusionPipeline.from_pretrained + pipe() with the same seed and
steps. "api": a real server (gunicorn; embedded default, or PostgreSQL + Redis + a separate
worker process with --stack redis) and HTTP requests with a real key. Cold = the first
request after start-up (the worker loads the model then); warm = the median of the rest.
Gateway overhead = end-to-end latency minus the pipeline's own inference time, as the
worker reports it in `timings.inference`.
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
import tempfile
import time
import uuid
from pathlib import Path

import requests
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def bare(model_dir: Path, width: int, height: int, steps: int, guidance: float, runs: int) -> dict:
    started = time.perf_counter()
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter() - started

    def call(seed: int) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            pipe(
                prompt="a lighthouse at dusk",
                width=width,
                height=height,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=[torch.Generator("cpu").manual_seed(seed)],
            )
        return time.perf_counter() - t0

    first = call(42)
    warm = [call(42) for _ in tqdm(range(runs), desc="bare pipe()", leave=False)]
    return {"cold": loaded + first, "first_call": first, "warm": warm}


def api(stack: str, model: str, width: int, height: int, steps: int, runs: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="imagehub-bench-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "IMAGEHUB_DATA_DIR": str(workdir),
        "IMAGEHUB_DEMO_MODELS_DIR": str(ROOT / "data" / "models"),
        "DJANGO_SECRET_KEY": uuid.uuid4().hex,
        "HF_HUB_OFFLINE": "1",
    }
    database = None
    if stack == "redis":
        import psycopg

        database = f"imagehub_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("postgresql://postgres@127.0.0.1/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {database}")
        env.update(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
            DRAMATIQ_BROKER_URL="redis://127.0.0.1:6379/14",
            IMAGEHUB_QUEUE=f"bench-{uuid.uuid4().hex[:6]}",
        )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    key = (
        subprocess.run(
            [*manage, "create_api_key", "bench@example.com"],
            env=env,
            check=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = _free_port()
    log = open(workdir / "server.log", "w")
    processes = [
        subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "imagehub.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "16",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    if stack == "redis":
        processes.append(
            subprocess.Popen(
                [*manage, "runworker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        body = {
            "model": model,
            "prompt": "a lighthouse at dusk",
            "size": f"{width}x{height}",
            "num_inference_steps": steps,
            "seed": 42,
        }

        def call() -> tuple[float, float]:
            t0 = time.perf_counter()
            response = session.post(f"{base}/v1/images/generations", json=body, timeout=300)
            elapsed = time.perf_counter() - t0
            response.raise_for_status()
            return elapsed, response.json()["timings"]["inference"]

        cold, cold_inference = call()
        warm = [call() for _ in tqdm(range(runs), desc=f"api ({stack})", leave=False)]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        if database:
            with psycopg.connect("postgresql://postgres@127.0.0.1/postgres", autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return {
        "cold": cold,
        "cold_inference": cold_inference,
        "warm": [w for w, _ in warm],
        "overhead": [w - i for w, i in warm],
        "inference": [i for _, i in warm],
    }


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", default="demo-sd")
    parser.add_argument("--stack", choices=["embedded", "redis"], action="append")
    parser.add_argument("--out", type=Path, help="append the table to this Markdown file")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
    import django

    django.setup()
    from generations.catalog import get_model

    spec = get_model(args.model)
    bare_result = bare(
        Path(spec.source), width, height, args.steps, spec.default_guidance, args.runs
    )
    rows = [
        ("bare pipe()", bare_result["cold"], statistics.median(bare_result["warm"]), None, None)
    ]
    for stack in args.stack or ["embedded"]:
        result = api(stack, spec.id, width, height, args.steps, args.runs)
        rows.append(
            (
                f"API, {stack}",
                result["cold"],
                statistics.median(result["warm"]),
                statistics.median(result["overhead"]),
                percentile(result["overhead"], 99),
            )
        )
    cpu = platform.processor() or platform.machine()
    machine = f"{platform.node()}: {os.cpu_count()} CPU cores, {cpu}"
    lines = [
        f"### {spec.id}, {args.size}, {args.steps} steps, seed 42 ({args.runs} warm runs)",
        "",
        f"Machine: {machine}, torch CPU float32. Command: `.venv/bin/python -m tests.bench "
        f"--size {args.size} --steps {args.steps} --model {spec.id}`",
        "",
        "| path | cold (s) | warm p50 (s) | overhead p50 (ms) | overhead p99 (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, cold, warm, over50, over99 in rows:
        lines.append(f"| {name} | {cold:.3f} | {warm:.3f} | {_ms(over50)} | {_ms(over99)} |")
    lines.append("")
    lines.append(
        "Cold for the bare loop = imports + `from_pretrained` + first call; cold for "
        "the API = the first request after the server started (the worker imports "
        "torch and loads the model during it)."
    )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with args.out.open("a") as handle:
            handle.write(table + "\n\n")


if __name__ == "__main__":
    main()
