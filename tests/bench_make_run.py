"""One request at a time on the embedded default (`make run`), against a bare `pipe()`
loop in another process, and where the difference goes.

    .venv/bin/python -m tests.bench_make_run [--size 256] [--requests 20] [--out BENCHMARKS.md]

The server is what `make run` starts (gunicorn with imagehub's event-loop worker, SQLite,
the in-process broker and worker threads, local files). Each request's `timings` split
its end-to-end time: `queue` (created → claimed), `device_wait`, `inference` (the
pipeline call inside the server), the worker's work after it (encode, store, settle:
total − the rest) and the gateway (e2e − total: HTTP, auth, validation, the hold before
the record exists; the wake-up, reading the file back and the JSON after it finished).
The bare loop runs in its own process before and after the server, same model, size,
steps and seeds; the ratio is bare call / server end to end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from tqdm import tqdm

from tests.bench import BIN, ROOT, _free_port, machine
from tests.benchfile import publish

MODEL, STEPS, PROMPT = "demo-sd", 4, "a lighthouse at dusk"

BARE = """
import statistics, sys, time, torch
from diffusers import DiffusionPipeline
size, count = int(sys.argv[1]), int(sys.argv[2])
pipe = DiffusionPipeline.from_pretrained(sys.argv[3], torch_dtype=torch.float32)
pipe.set_progress_bar_config(disable=True)
times = []
for seed in range(count + 2):
    started = time.perf_counter()
    with torch.inference_mode():
        pipe(prompt=sys.argv[4], num_inference_steps=int(sys.argv[5]), guidance_scale=5.0,
             height=size, width=size, generator=[torch.Generator("cpu").manual_seed(seed)])
    times.append(time.perf_counter() - started)
print(statistics.median(times[2:]))
"""


def bare(size: int, count: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", BARE, str(size), str(count),
         str(ROOT / "data" / "models" / MODEL), PROMPT, str(STEPS)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def server(size: int, count: int) -> list[dict]:
    data = Path(tempfile.mkdtemp(prefix="imagehub-bench-run-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "imagehub.settings",
           "IMAGEHUB_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1",
           "IMAGEHUB_DEMO_MODELS_DIR": str(ROOT / "data" / "models"),
           "DJANGO_SECRET_KEY": "bench-" + "x" * 40, "IMAGEHUB_WARMUP_MODELS": MODEL}  # fmt: skip
    for name in ("DATABASE_URL", "DRAMATIQ_BROKER_URL", "IMAGEHUB_MODEL_CATALOG"):
        env.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    key = subprocess.run(
        [*manage, "create_api_key", "bench@example.com", "--credits", str(10**15)],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    port = _free_port()
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "imagehub.asgi", "--bind", f"127.0.0.1:{port}", "--workers",
         "1", "--worker-class", "imagehub.server.Worker", "--timeout", "360"],
        env=env, cwd=ROOT, stdout=open(data / "server.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # up, and the model warm (/readyz?models=)
            try:
                if requests.get(f"{base}/readyz?models={MODEL}", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready; see {data / 'server.log'}")
            time.sleep(0.2)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        rows = []
        for seed in tqdm(range(count + 2), desc="make run, c=1", leave=False):
            started = time.perf_counter()
            response = session.post(
                f"{base}/v1/images/generations", timeout=300,
                json={"model": MODEL, "prompt": PROMPT, "size": f"{size}x{size}",
                      "num_inference_steps": STEPS, "seed": seed},
            )  # fmt: skip
            response.raise_for_status()
            rows.append({"e2e": time.perf_counter() - started, **response.json()["timings"]})
        return rows[2:]
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    before = bare(args.size, args.requests)
    rows = server(args.size, args.requests)
    after = bare(args.size, args.requests)
    call = statistics.median([before, after])

    def p50(f) -> float:
        return statistics.median(f(r) for r in rows) * 1000

    e2e = p50(lambda r: r["e2e"])
    parts = [
        ("queue (created → claimed)", p50(lambda r: r["queue"] or 0)),
        ("device wait", p50(lambda r: r["device_wait"] or 0)),
        ("inference inside the server", p50(lambda r: r["inference"])),
        ("worker after inference (encode, store, settle)",
         p50(lambda r: r["total"] - r["queue"] - (r["device_wait"] or 0) - r["inference"])),
        ("gateway (HTTP, auth, validation, hold; wake-up, file, JSON)",
         p50(lambda r: r["e2e"] - r["total"])),
    ]  # fmt: skip
    lines = [
        f"## One request at a time on make run ({args.size}², make bench-run)",
        "",
        f"Machine: {machine()}. Measured {dt.date.today().isoformat()} with `make bench-run` "
        f"(`.venv/bin/python -m tests.bench_make_run`): {args.requests} requests one after "
        f"another to what `make run` starts, `{MODEL}`, {STEPS} steps, PNG, `b64_json`; "
        "the bare loop in its own process before and after (median of both).",
        "",
        "| part | p50 (ms) |",
        "|---|---|",
        f"| bare `pipe()` call (alone) | {call * 1000:.1f} |",
        *[f"| {name} | {value:.1f} |" for name, value in parts],
        f"| **end to end** | **{e2e:.1f}** |",
        "",
        f"Server against the bare loop, one request at a time: **{call * 1000 / e2e:.2f}×**. "
        f"Inside the server the pipeline call takes {parts[2][1] / (call * 1000):.2f}× its "
        "time alone (every device call runs in one executor thread).",
        "",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
