"""LoRA adapters, measured on the engine the worker runs: what switching adapters costs
(first use: load into the cached pipeline; cached use: switch between loaded ones), what
an active adapter adds to a call, and throughput with three adapters interleaved against
the base model alone, through the device's batcher (batching on and off).

    .venv/bin/python -m tests.bench_adapters [--model demo-sd] [--size 256] [--steps 4]
        [--jobs 24] [--rounds 3] [--out BENCHMARKS.md]

Same machine, one run: the base model and the adapters are measured in the same process,
one after the other. Three random rank-16 adapters of the demo model are built for it
(the demo adapter's layout: the denoiser's attention projections and the text encoder's).
Writes its own section of BENCHMARKS.md ("## LoRA adapters (make bench-adapters)").
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SECTION = "## LoRA adapters (make bench-adapters)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-sd")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", help="write the results into this Markdown file")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
    import django

    django.setup()
    result = measure(args)
    lines = report(result, args)
    print("\n".join(lines))
    if args.out:
        from tests.benchfile import merge_report

        merge_report(Path(args.out), "\n".join(lines) + "\n")


def _request(spec, args, seed: int, adapters=()):
    from generations.engine import RunRequest

    return RunRequest(
        spec=spec,
        prompt="a lighthouse on a cliff at dusk",
        negative_prompt="",
        width=args.size,
        height=args.size,
        steps=args.steps,
        guidance_scale=spec.default_guidance,
        seeds=[seed],
        adapters=tuple(adapters),
    )


def measure(args) -> dict:
    from django.conf import settings

    from generations.catalog import get_model
    from generations.engine import AdapterUse
    from generations.engine.batcher import Batcher, run_batched
    from generations.engine.demo_adapters import build_demo_adapter
    from generations.engine.pipelines import Engine

    spec = get_model(args.model)
    engine = Engine("auto")
    folder = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    uses = []
    for i in range(3):
        path = build_demo_adapter(
            Path(settings.DEMO_MODELS_DIR) / args.model, folder / f"a{i}.safetensors",
            seed=100 + i, rank=args.rank,
        )  # fmt: skip
        uses.append(
            AdapterUse(id=f"bench{i}", path=str(path), scale=0.8, bytes=path.stat().st_size)
        )
    pipe = engine.pipeline(spec)
    # Every device call in the device's one executor thread, as on the worker (torch's
    # CPU thread pool belongs to the thread that calls it: the main thread's competes).
    single = Batcher(engine, batch_wait_ms=0, batching=False)
    run_batched(single, _request(spec, args, 0))  # warm: kernels, caches

    def timed(adapters=(), seed=1) -> tuple[float, float]:
        """(seconds of the whole engine call, seconds of the pipeline call alone)."""
        started = time.perf_counter()
        result = run_batched(single, _request(spec, args, seed, adapters))
        return time.perf_counter() - started, result.inference_seconds

    r: dict = {"device": engine.device, "model": spec.id, "file_bytes": uses[0].bytes}
    load_start = os.getloadavg()[0]
    # First use: the adapter is loaded into the cached pipeline (file -> PEFT layers).
    first = [timed([use]) for use in uses]
    r["first_use"] = statistics.median(total - call for total, call in first)
    r["first_total"] = statistics.median(total for total, _ in first)
    # Cached use: switching among loaded adapters (set_adapters / disable_lora only).
    # Cached use (switching among loaded adapters: set_adapters / disable_lora only),
    # alternating with base calls, so both see the same machine.
    cached, base = [], []
    for i in range(12):
        cached.append(timed([uses[i % 3]], seed=i))
        base.append(timed(seed=i))
    r["cached_use"] = statistics.median(total - call for total, call in cached)
    r["adapter_call"] = statistics.median(call for _, call in cached)
    r["base_overhead"] = statistics.median(total - call for total, call in base)
    r["base_call"] = statistics.median(call for _, call in base)
    r["loads"] = engine.adapters.loads

    # Activation alone, many times (the cost a switch adds to a call), in a thread of its
    # own like the device's.
    def switches() -> None:
        with engine.lock:
            started = time.perf_counter()
            for i in range(30):
                engine.adapters.activate(spec, pipe, [uses[i % 3]])
                engine.adapters.deactivate(pipe)
            r["switch_ms"] = (time.perf_counter() - started) / 30 * 1000

    thread = threading.Thread(target=switches)
    thread.start()
    thread.join()

    # Throughput through the batcher: the same jobs submitted at once, base alone and
    # three adapters interleaved (a, b, c, a, b, c, ...).
    def throughput(batching: bool, interleaved: bool) -> tuple[float, int]:
        batcher = Batcher(engine, batch_wait_ms=10, batching=batching)
        requests = [
            _request(spec, args, 1000 + i, [uses[i % 3]] if interleaved else ())
            for i in range(args.jobs)
        ]
        calls = len(batcher.history)
        batcher.pause()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_batched, batcher, request) for request in requests]
            while batcher.waiting() < args.jobs:
                time.sleep(0.01)
            started = time.perf_counter()
            batcher.resume()
            for future in futures:
                future.result()
        seconds = time.perf_counter() - started
        return args.jobs / seconds, len(batcher.history) - calls

    # Rounds of the four configurations in turn; the median round of each.
    samples: dict = {}
    for _ in range(args.rounds):
        for batching in (False, True):
            for interleaved in (False, True):
                ips, calls = throughput(batching, interleaved)
                samples.setdefault(("ips", batching, interleaved), []).append(ips)
                r[("calls", batching, interleaved)] = calls
    for key, values in samples.items():
        r[key] = statistics.median(values)
    r["load"] = (load_start, os.getloadavg()[0])
    return r


def report(r: dict, args) -> list[str]:
    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms"

    lines = [
        SECTION,
        "",
        f"{r['model']}, {args.size}x{args.size}, {args.steps} steps, one image per job, on "
        f"{r['device']} (this machine: 2-core CPU VM shared with other work, no GPU); three "
        f"random rank-{args.rank} adapters of {r['file_bytes'] / 1024:.0f} KiB each "
        "(denoiser attention + text encoder). Engine and batcher as the worker runs them; "
        "one process, one run. Command: `make bench-adapters` (`.venv/bin/python -m "
        f"tests.bench_adapters --model {args.model} --size {args.size} --steps {args.steps} "
        f"--jobs {args.jobs} --rounds {args.rounds} --out BENCHMARKS.md`).",
        "",
        "| switching cost | value |",
        "|---|---|",
        f"| first use (load into the cached pipeline + activate), added to the call | "
        f"{ms(r['first_use'])} |",
        f"| cached use (switch to a loaded adapter, then off), added to the call | "
        f"{ms(r['cached_use'])} (base request: {ms(r['base_overhead'])}) |",
        f"| activate + deactivate alone, 30 switches | {r['switch_ms']:.2f} ms each |",
        f"| pipeline call with an adapter active / base (median of 12 alternating pairs) | "
        f"{ms(r['adapter_call'])} / "
        f"{ms(r['base_call'])} ({r['adapter_call'] / r['base_call']:.2f}x) |",
        "",
        f"| throughput, {args.jobs} jobs submitted at once (median of {args.rounds} rounds) "
        "| images/s | pipeline calls |",
        "|---|---|---|",
    ]
    for batching in (False, True):
        for interleaved in (False, True):
            what = "3 adapters interleaved" if interleaved else "base model alone"
            mode = "batching on" if batching else "batching off"
            lines.append(
                f"| {what}, {mode} | {r[('ips', batching, interleaved)]:.2f} | "
                f"{r[('calls', batching, interleaved)]} |"
            )
    ratio_off = r[("ips", False, True)] / r[("ips", False, False)]
    ratio_on = r[("ips", True, True)] / r[("ips", True, False)]
    lines += [
        "",
        f"Interleaved adapters against the base alone: {ratio_off:.2f}x with batching off, "
        f"{ratio_on:.2f}x with batching on. With batching on, the interleaved jobs ran as "
        f"{r[('calls', True, True)]} pipeline calls (batches group jobs by adapter set: one "
        f"set per call) and the base jobs as {r[('calls', True, False)]}. Adapters stay loaded "
        "after their first use (an LRU within IMAGEHUB_ADAPTER_MEMORY_MB, counted in the "
        "model cache's budget), so a switch costs set_adapters, not a load. Load average "
        f"of the machine during the run: {r['load'][0]:.1f} at the start, {r['load'][1]:.1f} "
        "at the end (other work shared the 2 cores: compare rows of this run only).",
    ]
    return lines


if __name__ == "__main__":
    main()
