"""imagehub benchmarks: the full stack against a bare `pipe()` loop on the same inputs.

    .venv/bin/python -m tests.bench [--quick] [--out BENCHMARKS.md]

Full stack = gunicorn with the event-loop worker of `make web` (HTTP, bearer auth,
validation, credit hold, records) → Redis broker
→ a separate `runworker` process (claim, diffusers, PNG encoding, storage, settlement) →
completion notice → the waiting request reads the files back and answers. Database:
PostgreSQL. Bare loop = one process calling `pipe()` once per image, batch 1, same demo
model, sizes, steps and seeds.

Measured:
- latency: one 256x256 request, cold (first after start-up) and warm (median), against
  one bare call;
- throughput: steady images per second at concurrency 1, 8, 16 and 32, two sizes,
  batching off and on (IMAGEHUB_BATCHING), with the ratio to the bare loop (and the bare
  loop's own batched calls, the ceiling of batching), and gateway overhead per
  request = end-to-end latency − the worker's inference time − the time the job waited
  for a worker (`timings.queue`) and for the device (`timings.device_wait`), at
  p50/p95/p99;
- CPU per request of each process (web, worker, PostgreSQL, Redis, client) against the
  model's own CPU per image: on a CPU-only host they share the cores, which bounds the
  throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_DB = "postgresql://postgres@127.0.0.1/postgres"
MODEL = "demo-sd"
STEPS = 4
PROMPT = "a lighthouse at dusk"
BATCHES = (2, 4, 8)  # the bare loop's batch sizes measured besides 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def closed_loop(
    concurrency: int, per_client: int, call: Callable[[int, int], dict], desc: str
) -> tuple[list[dict], float]:
    """`concurrency` clients, each sending `per_client` requests one after another
    (`call(client, i)` sends one and returns its figures). Returns every request's figures
    and the steady rate in requests per second: each client's rate from the start of its
    second request to the start of its last (a cycle: one request and the client's own
    work before the next), summed. The first round (the queue filling, batches forming
    from nothing) and the last (companions gone, a partial batch) are left out, as a
    service under constant load never sees them."""
    if per_client < 3:
        raise ValueError("a steady rate needs at least 3 requests per client")
    starts: list[list[float]] = [[] for _ in range(concurrency)]
    bar = tqdm(total=concurrency * per_client, desc=desc, leave=False)

    def client(c: int) -> list[dict]:
        results = []
        for i in range(per_client):
            starts[c].append(time.perf_counter())
            results.append(call(c, c * per_client + i))
            bar.update()
        return results

    with bar, ThreadPoolExecutor(concurrency) as pool:
        results = [r for rs in pool.map(client, range(concurrency)) for r in rs]
    rate = sum((len(s) - 2) / (s[-1] - s[1]) for s in starts)
    return results, rate


# --- the bare loop --------------------------------------------------------------------------
class Bare:
    def __init__(self, model_dir: Path, guidance: float):
        started = time.perf_counter()
        import torch
        from diffusers import DiffusionPipeline

        self.torch = torch
        self.pipe = DiffusionPipeline.from_pretrained(str(model_dir), torch_dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.guidance = guidance
        self.load_seconds = time.perf_counter() - started
        # CPU seconds per image, by (size, images per call).
        self.cpu_per_image: dict[tuple[int, int], float] = {}

    def call(self, size: int, seed: int, batch: int = 1) -> float:
        started = time.perf_counter()
        with self.torch.inference_mode():
            self.pipe(
                prompt=[PROMPT] * batch,
                width=size,
                height=size,
                num_inference_steps=STEPS,
                guidance_scale=self.guidance,
                generator=[self.torch.Generator("cpu").manual_seed(seed + i) for i in range(batch)],
            )
        return time.perf_counter() - started

    def images_per_second(self, size: int, count: int, batch: int = 1) -> float:
        """Images a second of `count` images made `batch` at a time (one call per batch)."""
        self.call(size, 0, batch)  # warm
        calls = max(2, count // batch)
        started, cpu = time.perf_counter(), time.process_time()
        for seed in tqdm(range(calls), desc=f"bare {size}² batch {batch}", leave=False):
            self.call(size, seed * batch, batch)
        self.cpu_per_image[(size, batch)] = (time.process_time() - cpu) / (calls * batch)
        return calls * batch / (time.perf_counter() - started)

    def cpu_for(self, size: int, images_per_call: float) -> float:
        """CPU seconds per image of the measured batch size nearest `images_per_call`."""
        measured = [batch for (s, batch) in self.cpu_per_image if s == size]
        nearest = min(measured, key=lambda batch: abs(batch - images_per_call))
        return self.cpu_per_image[(size, nearest)]


def batch_sizes(model: str = MODEL) -> list[int]:
    """Images per device call so far in the running stack, from its worker's log lines."""
    text = Path(STACK["log"]).read_text(errors="replace")
    return [int(n) for n in re.findall(rf"batch model={re.escape(model)} images=(\d+)", text)]


# --- CPU time per process ------------------------------------------------------------------------
# The stack's processes (set by stack()): its CPU seconds per request tell where a 2-core
# machine's cores go, whatever else runs beside the benchmark.
STACK: dict = {}
TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds so far of the web processes, the worker, this database's PostgreSQL
    backends and the Redis server (all of its clients: on a shared machine, an upper
    bound)."""
    import psycopg
    import redis

    web = STACK["web"]
    snapshot = {
        "web": sum(_proc_cpu(pid) for pid in [web, *_children(web)]),
        "worker": _proc_cpu(STACK["worker"]),
    }
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (STACK["database"],)
        ).fetchall()
    snapshot["postgres"] = sum(_proc_cpu(pid) for (pid,) in pids)
    info = redis.Redis.from_url(STACK["broker"]).info("cpu")
    snapshot["redis"] = info["used_cpu_user"] + info["used_cpu_sys"]
    return snapshot


# --- the full stack -------------------------------------------------------------------------
@contextlib.contextmanager
def stack(*, batching: bool, extra_env: dict | None = None, warm: str = MODEL):
    """PostgreSQL database, gunicorn, Redis broker and one worker process with the
    default worker settings (`extra_env` adds or overrides variables); yields (url, key)."""
    import psycopg

    workdir = Path(tempfile.mkdtemp(prefix="imagehub-bench-"))
    database = f"imagehub_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "IMAGEHUB_DATA_DIR": str(workdir),
        "IMAGEHUB_DEMO_MODELS_DIR": str(ROOT / "data" / "models"),
        "DJANGO_SECRET_KEY": uuid.uuid4().hex,
        "HF_HUB_OFFLINE": "1",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "DRAMATIQ_BROKER_URL": "redis://127.0.0.1:6379/14",
        "IMAGEHUB_QUEUE": f"bench-{uuid.uuid4().hex[:6]}",
        "IMAGEHUB_BATCHING": "1" if batching else "0",
        "IMAGEHUB_WARMUP_MODELS": warm,
        **(extra_env or {}),
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    key = (
        subprocess.run(
            [*manage, "create_api_key", "bench@example.com", "--credits", str(10**15)],
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
                # What `make web` runs (its GUNICORN_OPTS), with one web process.
                str(BIN / "gunicorn"),
                "imagehub.asgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "imagehub.server.Worker",
                "--timeout",
                "360",
                # Clients reuse connections between requests; gunicorn's default of 2 s
                # would close idle ones under them.
                "--keep-alive",
                "120",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [*manage, "runworker"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        ),
    ]
    base = f"http://127.0.0.1:{port}"
    STACK.update(
        web=processes[0].pid,
        worker=processes[1].pid,
        database=database,
        broker=env["DRAMATIQ_BROKER_URL"],
        log=str(workdir / "server.log"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):  # still booting
                requests.get(f"{base}/healthz", timeout=5)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {workdir / 'server.log'}")
            time.sleep(0.1)
        yield base, key
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def request(session: requests.Session, base: str, size: int, seed: int) -> dict:
    started = time.perf_counter()
    response = session.post(
        f"{base}/v1/images/generations",
        timeout=600,
        json={
            "model": MODEL,
            "prompt": PROMPT,
            "size": f"{size}x{size}",
            "num_inference_steps": STEPS,
            "seed": seed,
        },
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    timings = response.json()["timings"]
    return {
        "e2e": elapsed,
        "inference": timings["inference"],
        "queue": timings["queue"] + (timings["device_wait"] or 0),
    }


def load(base: str, key: str, size: int, concurrency: int, count: int) -> dict:
    sessions = [requests.Session() for _ in range(concurrency)]
    for session in sessions:
        session.headers["Authorization"] = f"Bearer {key}"
    for session in sessions:  # warm connections, worker and model
        request(session, base, size, 0)
    cpu_before, client_before = cpu_snapshot(), time.process_time()
    calls_before = len(batch_sizes())
    results, rate = closed_loop(
        concurrency,
        max(3, count // concurrency),
        lambda c, i: request(sessions[c], base, size, i),
        f"stack {size}² c={concurrency}",
    )
    count = len(results)
    cpu_after, client_after = cpu_snapshot(), time.process_time()
    calls = batch_sizes()[calls_before:]
    cpu = {name: (cpu_after[name] - cpu_before[name]) / count for name in cpu_after}
    cpu["client"] = (client_after - client_before) / count
    overhead = [r["e2e"] - r["inference"] - r["queue"] for r in results]
    return {
        "cpu": cpu,
        "ips": rate,
        "images_per_call": statistics.mean(calls) if calls else 1.0,
        "e2e_p50": pct([r["e2e"] for r in results], 50),
        "over_p50": pct(overhead, 50),
        "over_p95": pct(overhead, 95),
        "over_p99": pct(overhead, 99),
    }


def beside_bare(bare: Bare, size: int, run: Callable[[], dict]) -> dict:
    """A stack run with the bare loop measured right before and right after it (the
    mean is its `bare_ips`): on a shared machine whose speed drifts by a fifth over
    minutes, the ratio compares like with like."""
    before = bare.images_per_second(size, 16)
    result = run()
    result["bare_ips"] = (before + bare.images_per_second(size, 16)) / 2
    return result


# --- report -----------------------------------------------------------------------------------
def cpu_section(throughput: dict, bare: Bare) -> list[str]:
    """Where the cores go: CPU milliseconds per request of each process, against the bare
    loop's CPU per image. On a CPU-only host the device's work and the gateway's share the
    same cores, so this, not a wait, bounds the throughput."""
    lines = [
        "## CPU per request",
        "",
        "CPU milliseconds each process spent per request during the throughput runs above "
        "(/proc utime + stime; PostgreSQL: this database's backends; Redis: the whole "
        "server, an upper bound). `model` is the bare loop's CPU per image at the same size "
        "and the batch size nearest the run's mean images per call; `worker beyond the "
        "model` is the worker's CPU less that. Bound = cores ÷ (CPU per request, all "
        "processes): the most requests a second this machine's cores can serve. On a CPU "
        "the pipeline call itself keeps every core busy (its CPU is about cores × its wall "
        "time), so each millisecond of CPU the web, the database and the worker's own "
        "bookkeeping spend is taken from the model, and the full stack cannot pass the "
        "bound whatever overlaps what; the worker's CPU beyond the call also grows with "
        "concurrency, as the call runs slower (GIL and cores shared with the threads that "
        "encode, store and settle). On a GPU host the device's work does not use these "
        "cores, which the emulated-device benchmark (make bench-pipeline) measures.",
        "",
        "| size | batching | concurrency | images per call | model | worker | worker beyond "
        "the model | web | PostgreSQL | Redis | client | bound (img/s) | measured img/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cores = os.cpu_count() or 1
    for batching in (False, True):
        for (size, concurrency), r in throughput[batching].items():
            cpu, call = r["cpu"], bare.cpu_for(size, r["images_per_call"])
            total = sum(cpu.values())
            lines.append(
                f"| {size}² | {'on' if batching else 'off'} | {concurrency} "
                f"| {r['images_per_call']:.1f} | {call * 1000:.1f} "
                f"| {cpu['worker'] * 1000:.1f} | {(cpu['worker'] - call) * 1000:.1f} "
                f"| {cpu['web'] * 1000:.1f} | {cpu['postgres'] * 1000:.1f} "
                f"| {cpu['redis'] * 1000:.1f} | {cpu['client'] * 1000:.1f} "
                f"| {cores / total:.1f} | {r['ips']:.2f} |"
            )
    lines.append("")
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return f"{os.cpu_count()} CPU cores ({cpu}){memory}, no GPU; torch CPU float32"


def main() -> None:
    parser = argparse.ArgumentParser(description="imagehub benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer requests, one size")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
    import django

    django.setup()
    from generations.catalog import get_model

    spec = get_model(MODEL)
    sizes = [128] if args.quick else [128, 256]
    levels = [(1, 8), (8, 24)] if args.quick else [(1, 16), (8, 64), (16, 96), (32, 128)]
    bare = Bare(Path(spec.source), spec.default_guidance)
    bare_ips = {size: bare.images_per_second(size, 16 if args.quick else 30) for size in sizes}
    # What the model can do in batched calls on this machine: the ceiling of batching.
    batched_ips = {
        (size, batch): bare.images_per_second(size, 16 if args.quick else 32, batch)
        for size in sizes
        for batch in BATCHES
    }
    bare_call = statistics.median(bare.call(256, 42) for _ in range(10))

    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}. Measured {dt.date.today().isoformat()} with "
        "`make bench` (`.venv/bin/python -m tests.bench --out BENCHMARKS.md`).",
        "",
        f"Model `{MODEL}` (random-weight SD-style pipeline built by `build_demo_models`), "
        f"{STEPS} steps, guidance {spec.default_guidance}, PNG output, `b64_json`. Stack: "
        "gunicorn (one process, the event-loop worker of `make web`) + PostgreSQL + Redis "
        "broker + one separate worker process (default "
        "threads: 3 with batching off, 16 with it on), all on this machine.",
        "",
    ]
    latency_rows = []
    with stack(batching=False) as (base, key):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        cold = request(session, base, 256, 42)
        warm = [request(session, base, 256, 42) for _ in range(15)]
        latency_rows.append(
            (
                "full stack",
                cold["e2e"],
                statistics.median(w["e2e"] for w in warm),
                statistics.median(w["e2e"] - w["inference"] - w["queue"] for w in warm),
            )
        )
        throughput = {False: {}}
        for size in sizes:
            for concurrency, count in levels:
                throughput[False][(size, concurrency)] = beside_bare(
                    bare, size, functools.partial(load, base, key, size, concurrency, count)
                )
    throughput[True] = {}
    with stack(batching=True) as (base, key):
        for size in sizes:
            for concurrency, count in levels:
                throughput[True][(size, concurrency)] = beside_bare(
                    bare, size, functools.partial(load, base, key, size, concurrency, count)
                )

    lines += [
        "## One request, 256x256",
        "",
        "| path | cold (s) | warm p50 (s) | gateway overhead p50 (ms) |",
        "|---|---|---|---|",
        f"| bare `pipe()` | {bare.load_seconds + bare_call:.3f} (load + call) | "
        f"{bare_call:.3f} | — |",
    ]
    for name, cold_s, warm_s, over in latency_rows:
        lines.append(
            f"| {name} | {cold_s:.3f} (first request) | {warm_s:.3f} | {over * 1000:.1f} |"
        )
    lines += [
        "",
        "The worker process loads the model at start-up (IMAGEHUB_WARMUP_MODELS), so "
        "'cold' is the first request after the server came up.",
        "",
        "## Throughput",
        "",
        "| size | batching | concurrency | bare loop img/s | full stack img/s | ratio | "
        "e2e p50 (s) | overhead p50 / p95 / p99 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for batching in (False, True):
        for (size, concurrency), r in throughput[batching].items():
            lines.append(
                f"| {size}² | {'on' if batching else 'off'} | {concurrency} | "
                f"{r['bare_ips']:.2f} | {r['ips']:.2f} | {r['ips'] / r['bare_ips']:.2f}× | "
                f"{r['e2e_p50']:.3f} | {r['over_p50'] * 1000:.1f} / {r['over_p95'] * 1000:.1f}"
                f" / {r['over_p99'] * 1000:.1f} |"
            )
    lines += [
        "",
        "Overhead = end-to-end latency − inference − time waiting for a worker "
        "(`timings.queue`) − time waiting for the device (`timings.device_wait`: other "
        "batches running, or this batch forming): what the gateway adds around the model. "
        "With batching, `inference` is the duration of the batch call the image was in.",
        "",
        "The rate is the steady one: each client's requests from its second to its last "
        "(tests/bench.py, closed_loop), so the queue filling at the start and the last "
        "partial batches are left out. The bare loop of each row is measured right before "
        "and right after that row's run (the mean): this shared machine's speed drifts by "
        "up to a fifth over minutes.",
        "",
        "What the model itself does in batched calls (the bare loop, one call per batch), "
        "the ceiling of batching on this machine:",
        "",
        "| size | " + " | ".join(f"batch {b} img/s" for b in (1, *BATCHES)) + " |",
        "|---|" + "---|" * (1 + len(BATCHES)),
        *[
            f"| {size}² | {bare_ips[size]:.2f} | "
            + " | ".join(f"{batched_ips[(size, b)]:.2f}" for b in BATCHES)
            + " |"
            for size in sizes
        ],
        "",
        "No GPU was available to the session that measured this; the FLUX.1-schnell "
        "1024² figure on an H100 is still to be measured.",
        "",
    ]
    lines += cpu_section(throughput, bare)
    report = "\n".join(lines)
    print(report)
    if args.out:
        from tests.benchfile import merge_report

        # Its own sections and the machine line; the other benchmarks' sections stay.
        merge_report(args.out, report, replace_head=True)


if __name__ == "__main__":
    main()
