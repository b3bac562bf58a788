"""`make bench-gpu` runs correctly: the same script on the CPU at tiny dimensions (the
random-weight FLUX architecture built and loaded back, the bare loops eager and compiled,
the service of `make run` over HTTP) writes its one table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def test_bench_gpu_runs_on_the_cpu_at_tiny_dimensions(tmp_path):
    """In two calls, as on a lent GPU whose calls are too short for the whole run: the
    bare loops first, then the service; the second call's table has the rows of both."""
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Another benchmark\n\nkept as it is\n")
    results = tmp_path / "results.json"
    for parts in ("service", "eager,compiled"):  # in any order
        done = subprocess.run(
            [
                *(sys.executable, "-m", "tests.bench_gpu", "--tiny", "--count", "1"),
                *("--parts", parts, "--results", str(results), "--out", str(out)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        if parts == "service":  # no bare loop yet: nothing to compare with
            assert "no bare loop measured yet" in done.stdout
            assert "GPU bench" not in out.read_text()
    text = out.read_text()
    assert "## Another benchmark\n\nkept as it is" in text
    assert "## GPU bench on the CPU at tiny dimensions" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "×" in line]
    labels = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert labels == [
        "bare eager, batch 1",
        "bare eager, batch 2",
        "bare compiled + fused QKV + channels_last, batch 1",
        "bare compiled + fused QKV + channels_last, batch 2",
        "service, one client",
        "service, 4 clients",
    ]
    assert "Targets (service under load" in text and "no GPU: the CPU" in text


def test_bench_gpu_builds_another_family_from_its_configs(tmp_path):
    """--configs: FLUX.2 [dev] from a folder of its configs and tokenizer files alone (its
    Pixtral processor substituted on this host without torchvision), random weights."""
    from generations.engine.family_models import build_tiny

    configs = tmp_path / "FLUX.2-dev"
    build_tiny("tiny-flux2-dev", configs)
    for weights in configs.rglob("*.safetensors"):
        weights.unlink()
    out = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench_gpu", "--tiny", "--count", "1",
         "--configs", str(configs), "--out", str(out), "--folder", str(tmp_path / "built")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert (
        "tiny dimensions (a check of the script, not figures): FLUX.2-dev (Flux2Pipeline)" in text
    )
    rows = [line for line in text.splitlines() if line.startswith("| ") and "×" in line]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows][-2:] == [
        "service, one client",
        "service, 4 clients",
    ]
    # The saved model names the real checkpoint's processor, as its configs did.
    index = json.loads((tmp_path / "built" / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", "PixtralProcessor"]
    assert any((tmp_path / "built" / "transformer").glob("*.safetensors"))
