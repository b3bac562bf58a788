"""The installed project on this Python: metadata, every module imports, Django's checks
pass and the migrations match the models.

`make test-pythons` runs this file alone on the other supported Pythons, with
`--noconftest` (the shared fixtures build the demo models, which needs torch). Where
torch is not installed there (its CPU build is not reachable and the CUDA build is
several GB), the modules that import torch at import time are skipped, each naming
what it lacks; every other failure to import is a failure.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
import platform
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
APPS = ("imagehub", "accounts", "generations")
# What an engine module may import at import time that a torch-less install lacks
# (accelerate depends on torch, so the torch-less install leaves it out too).
TORCH_STACK = {"torch", "torchvision", "accelerate"}
TORCH_INSTALLED = importlib.util.find_spec("torch") is not None
# Server entry points start the embedded worker and warm the engine when imported:
# compiled here, not run (the end-to-end tests run them).
ENTRY_POINTS = {"imagehub.wsgi", "imagehub.asgi", "imagehub.worker"}


def _modules(name: str, path: Path) -> list[str]:
    """Every module and package under ``path``, found without importing any of them."""
    found = [name]
    for info in pkgutil.iter_modules([str(path)], prefix=f"{name}."):
        if info.ispkg:
            found += _modules(info.name, path / info.name.rsplit(".", 1)[1])
        else:
            found.append(info.name)
    return found


MODULES = [module for app in APPS for module in _modules(app, ROOT / app)]


def test_every_app_module_is_found():
    assert {"imagehub.settings", "imagehub.urls", "accounts.models"} <= set(MODULES)
    assert any(module.startswith("generations.") for module in MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    if module in ENTRY_POINTS:
        spec = importlib.util.find_spec(module)
        compile(Path(spec.origin).read_text(), spec.origin, "exec")
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in TORCH_STACK and not TORCH_INSTALLED:
            pytest.skip(f"{module} imports {missing} at import time; torch is not installed")
        raise


def test_installed_metadata_admits_this_python():
    from packaging.specifiers import SpecifierSet

    # A failure here after pyproject.toml changed may just be a stale install:
    # `make install` (which make test runs) reinstalls the project.
    meta = importlib.metadata.metadata("imagehub")
    assert platform.python_version() in SpecifierSet(meta["Requires-Python"])
    minor = ".".join(platform.python_version_tuple()[:2])
    assert f"Programming Language :: Python :: {minor}" in (meta.get_all("Classifier") or [])


def test_django_system_checks_pass():
    call_command("check", fail_level="WARNING")


@pytest.mark.django_db
def test_migrations_match_the_models():
    # Exits with status 1 when a model change has no migration.
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)
