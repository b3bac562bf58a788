#!/usr/bin/env python3
"""Wheels of imagehub's dependencies for a GPU machine without network (make gpu-wheels).

    .venv/bin/python scripts/gpu_wheels.py [FOLDER] [--print]

The GPU machine has Python 3.12 and a CUDA build of torch, transformers and numpy, but not
the project's other packages (../shared/gpu/README.md). This downloads, for CPython 3.12
on manylinux x86_64, the exact versions installed in this .venv of everything imagehub
needs at run time (and `make bench-gpu` needs: torchao, requests), leaving out torch,
transformers, numpy and what only they need. On the GPU machine:

    pip install --no-index --no-deps --target /tmp/site FOLDER/*.whl
    PYTHONPATH=/tmp/site:$PWD python -m tests.bench_gpu --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

# The GPU machine brings these (and a CUDA torch must not be replaced).
PROVIDED = {"torch", "transformers", "numpy", "triton", "setuptools", "pip"}
# Beyond imagehub's own requirements: fp8/int8 weights, and the benchmark's HTTP client.
EXTRA = ["torchao", "requests"]
# The GPU machine's Python, for environment markers.
TARGET = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> dict[str, str]:
    """{distribution: installed version} of `roots` and everything they require here."""
    found: dict[str, str] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonical(requirement.name)
        if name in PROVIDED or name.startswith("nvidia-"):
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        extras = set(requirement.extras)
        if name in found and not extras:
            continue
        found[name] = dist.version
        for text in dist.requires or ():
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({**TARGET, "extra": extra}) for extra in extras or {""}
            ):
                todo.append(sub)
    found.pop("imagehub", None)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="gpu-wheels", type=Path)
    parser.add_argument("--print", action="store_true", help="list the pins, download nothing")
    args = parser.parse_args()
    pins = closure(["imagehub", *EXTRA])
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    if args.print:
        print("\n".join(lines))
        return 0
    args.folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        *("--python-version", "3.12", "--implementation", "cp", "--abi", "cp312"),
        *("--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64"),
        *("--platform", "manylinux_2_28_x86_64", "--platform", "any"),
        *("--abi", "abi3", "--abi", "none"),
        "-d",
        str(args.folder),
        *lines,
    ]
    done = subprocess.run(command)
    if done.returncode == 0:
        wheels = sorted(args.folder.glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels) / 2**20
        print(f"{len(wheels)} wheels, {size:.0f} MiB in {args.folder}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
