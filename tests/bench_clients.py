"""Slow and numerous clients against the web server (`make bench-clients`).

For each server set-up (imagehub's: gunicorn + uvicorn workers on an event loop,
imagehub/server.py; and the thread-per-connection gthread it replaced) it starts one web
process on PostgreSQL with a Redis broker and *no* worker, so every generation stays
queued and every sync request stays in flight until the benchmark releases it, then:

1. **Slow headers.** 500 connections send a request line and then one header byte per
   second, while a normal request (`GET /v1/models` on a new connection) is timed every
   0.25 s: latency p50/max, failures, and how many slow connections were still held.
2. **In-flight sync requests.** N (2,000) `POST /v1/images/generations` wait for their
   images at once. When all N are accepted (N queued rows), the web process's memory
   (RSS) and thread count are read and a normal request is timed; then every generation
   is canceled through the API, which answers each waiting request (409 `canceled`).
   Counted: answers by status, connection errors, time to answer all.

It prints a Markdown report and, with --out, writes it into BENCHMARKS.md (between
markers, leaving the rest of the file as it is). Timings live here, never in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_DB = "postgresql://postgres@127.0.0.1/postgres"
BEGIN, END = "<!-- bench-clients:begin -->", "<!-- bench-clients:end -->"

SERVERS = {
    "imagehub (gunicorn + uvicorn worker, asyncio)": [
        "imagehub.asgi",
        "--worker-class",
        "imagehub.server.Worker",
    ],
    "gthread, 64 threads (before)": [
        "imagehub.wsgi",
        "--worker-class",
        "gthread",
        "--threads",
        "64",
    ],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def web(server_args: list[str]):
    """One web process (PostgreSQL, Redis broker, no worker); yields (port, key, pid, db)."""
    import psycopg

    workdir = Path(tempfile.mkdtemp(prefix="imagehub-bench-clients-"))
    database = f"imagehub_benchc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagehub.settings",
        "IMAGEHUB_DATA_DIR": str(workdir),
        "IMAGEHUB_DEMO_MODELS_DIR": str(ROOT / "data" / "models"),
        "DJANGO_SECRET_KEY": uuid.uuid4().hex,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "DRAMATIQ_BROKER_URL": "redis://127.0.0.1:6379/14",
        # A queue nobody consumes: jobs stay queued, requests stay in flight.
        "IMAGEHUB_QUEUE": f"bench-clients-{uuid.uuid4().hex[:6]}",
        "IMAGEHUB_LOG_LEVEL": "WARNING",
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
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            *server_args,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "360",
            "--keep-alive",
            "75",
            "--backlog",
            "4096",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.2)
        time.sleep(1)
        worker_pid = _children(process.pid)[0]
        yield port, key, worker_pid, env["DATABASE_URL"]
    finally:
        workers = _children(process.pid)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pid in workers:  # a worker stuck in waiting threads outlives a killed master
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()
        with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()] or [pid]


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def memory(pid: int) -> tuple[float, int]:
    """(RSS in MiB, threads) of a process."""
    status = _status(pid)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"].strip())


# --- a tiny HTTP/1.1 client (one request per connection) ------------------------------------
async def request(
    port: int, method: str, path: str, *, key: str = "", body: dict | None = None, headers=()
) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        if key:
            lines.append(f"Authorization: Bearer {key}")
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        lines += list(headers)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        data = await reader.read()
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
        return status, data
    finally:
        writer.close()


async def timed(port: int, key: str, timeout: float = 5.0) -> float | None:
    started = time.perf_counter()
    try:
        status, _ = await asyncio.wait_for(request(port, "GET", "/v1/models", key=key), timeout)
    except (TimeoutError, OSError):
        return None
    return time.perf_counter() - started if status == 200 else None


# --- 1. slow headers ---------------------------------------------------------------------------
async def slow_headers(port: int, key: str, connections: int, seconds: float) -> dict:
    held = 0
    stop = asyncio.Event()

    async def trickle():
        nonlocal held
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        try:
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await writer.drain()
            while not stop.is_set():
                await asyncio.sleep(1)
                writer.write(b"X")  # one byte of a header that never ends
                await writer.drain()
            # Still held by the server when the measurement ends?
            held += not reader.at_eof()
        except OSError:
            pass
        finally:
            writer.close()

    tasks = []
    for _ in range(connections):
        tasks.append(asyncio.create_task(trickle()))
        await asyncio.sleep(0.002)
    await asyncio.sleep(1)
    samples: list[float | None] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(await timed(port, key))
        await asyncio.sleep(0.25)
    stop.set()
    await asyncio.gather(*tasks)
    ok = sorted(s for s in samples if s is not None)
    return {
        "connections": connections,
        "held": held,
        "requests": len(samples),
        "failed": len(samples) - len(ok),
        "p50_ms": statistics.median(ok) * 1000 if ok else None,
        "max_ms": ok[-1] * 1000 if ok else None,
    }


# --- 2. in-flight sync requests ------------------------------------------------------------
def _queued(database_url: str) -> list[str]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM generations_generation WHERE status = 'queued'"
        ).fetchall()
    return [row[0] for row in rows]


async def in_flight(
    port: int, key: str, pid: int, database_url: str, count: int, accept_seconds: float
) -> dict:
    rss_before, threads_before = memory(pid)
    answers: dict[int, int] = {}
    errors = 0
    body = {"prompt": "a lighthouse", "size": "64x64"}

    async def one(i: int):
        nonlocal errors
        await asyncio.sleep(i * 0.004)  # 250 new requests a second
        try:
            status, _ = await request(
                port,
                "POST",
                "/v1/images/generations",
                key=key,
                body=body,
                headers=["Prefer: wait=300"],
            )
        except OSError:
            errors += 1
            return
        answers[status] = answers.get(status, 0) + 1

    started = time.monotonic()
    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    accepted = 0
    while time.monotonic() - started < accept_seconds:
        await asyncio.sleep(1)
        accepted = len(await asyncio.to_thread(_queued, database_url))
        if accepted >= count:
            break
    held_after = time.monotonic() - started
    rss, threads = memory(pid)
    normal = [await timed(port, key, timeout=5) for _ in range(3)]
    ok = [s for s in normal if s is not None]
    # Release every waiting request: cancel its generation through the API.
    ids = await asyncio.to_thread(_queued, database_url)
    release_started = time.monotonic()
    semaphore = asyncio.Semaphore(32)

    async def cancel(generation_id: str):
        async with semaphore:
            with contextlib.suppress(OSError, TimeoutError):
                path = f"/v1/images/generations/{generation_id}/cancel"
                await asyncio.wait_for(request(port, "POST", path, key=key), 10)

    await asyncio.gather(*(cancel(g) for g in ids))
    done, pending = await asyncio.wait(tasks, timeout=60)
    for task in pending:
        task.cancel()
    return {
        "requests": count,
        "accepted_in_flight": accepted,
        "seconds_to_accept": held_after,
        "rss_mib_before": rss_before,
        "rss_mib": rss,
        "threads_before": threads_before,
        "threads": threads,
        "normal_p50_ms": statistics.median(ok) * 1000 if ok else None,
        "normal_failed": len(normal) - len(ok),
        "answers": dict(sorted(answers.items())),
        "connection_errors": errors,
        "unanswered": len(pending),
        "seconds_to_release": time.monotonic() - release_started,
    }


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def report(results: dict, args) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    lines = [
        BEGIN,
        "## Slow and numerous clients (`make bench-clients`)",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}; one web process on PostgreSQL + Redis broker, "
        "no worker (jobs stay queued). Measured "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at the end "
        f"{os.getloadavg()[0]:.1f}.",
        "",
        f"**Slow headers**: {args.slow} connections trickle one header byte a second "
        f"for {args.seconds:g} s while `GET /v1/models` is timed every 0.25 s on a new "
        "connection (5 s client timeout).",
        "",
        "| server | slow connections held | normal requests | failed | p50 | max |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        s = result["slow"]
        lines.append(
            f"| {name} | {s['held']} / {s['connections']} | {s['requests']} | {s['failed']} "
            f"| {_ms(s['p50_ms'])} | {_ms(s['max_ms'])} |"
        )
    lines += [
        "",
        f"**In-flight sync requests**: {args.inflight} `POST /v1/images/generations` "
        "(`Prefer: wait=300`) opened at 250 a second and held until all are accepted "
        "(or 300 s; 60 s for gthread); then every generation is canceled through the API, "
        "which answers each waiting request `409 canceled` (answers awaited 60 s).",
        "",
        "| server | accepted and waiting | web RSS idle → holding | threads | "
        "normal request meanwhile | answers | connection errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        f = result["flight"]
        answers = ", ".join(f"{status}: {n}" for status, n in f["answers"].items()) or "none"
        lines.append(
            f"| {name} | {f['accepted_in_flight']} / {f['requests']} "
            f"(in {f['seconds_to_accept']:.0f} s) "
            f"| {f['rss_mib_before']:.0f} → {f['rss_mib']:.0f} MiB "
            f"| {f['threads_before']} → {f['threads']} "
            f"| {_ms(f['normal_p50_ms'])} ({f['normal_failed']} failed) "
            f"| {answers}; {f['unanswered']} unanswered | {f['connection_errors']} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(out: Path, text: str) -> None:
    current = out.read_text() if out.exists() else ""
    if BEGIN in current and END in current:
        before, rest = current.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        current = before + text + ("\n" + after if after else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text
    out.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--inflight", type=int, default=2000)
    parser.add_argument("--only", choices=["imagehub", "gthread"], default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    for name, server_args in SERVERS.items():
        if args.only and not name.startswith(args.only):
            continue
        with web(server_args) as (port, key, pid, database_url):
            print(f"{name}: slow headers…", flush=True)
            slow = asyncio.run(slow_headers(port, key, args.slow, args.seconds))
            print(f"  {slow}", flush=True)
            print(f"{name}: {args.inflight} in-flight sync requests…", flush=True)
            # The thread-per-connection server cannot accept more than its threads: a
            # minute shows it.
            accept_seconds = 300 if name.startswith("imagehub") else 60
            flight = asyncio.run(
                in_flight(port, key, pid, database_url, args.inflight, accept_seconds)
            )
            print(f"  {flight}", flush=True)
            results[name] = {"slow": slow, "flight": flight}
    text = report(results, args)
    print(text)
    if args.out:
        write(args.out, text)


if __name__ == "__main__":
    main()
