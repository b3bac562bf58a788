"""build_demo_models: write the tiny random-weight demo pipelines to disk.

    manage.py build_demo_models [--dir DIR] [--force] [demo-sd demo-flux ...]

Builds each named demo (default: all) into ``settings.DEMO_MODELS_DIR / name``, skipping
ones already complete unless --force. Then a small random LoRA adapter for each
(``DEMO_MODELS_DIR/adapters/``), registered as the operator's shared adapter
(``adp_demo_sd_style``, ``adp_demo_flux_style``) when the database is migrated. Each
build goes to a temporary folder beside the target and is renamed into place, so a crash
never leaves a half-written model that a worker would try to load.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from tqdm import tqdm

from generations.adapters.services import adapter_register_shared
from generations.engine.demo_adapters import DEMO_ADAPTERS, build_demo_adapter
from generations.engine.demo_models import DEMO_BUILDERS, DEMO_STEPS, is_built


class Command(BaseCommand):
    help = "Build the local random-weight demo models (no network needed)."

    def add_arguments(self, parser):
        parser.add_argument(
            "names",
            nargs="*",
            metavar="name",
            help=f"demo models to build (default: all of {', '.join(DEMO_BUILDERS)})",
        )
        parser.add_argument(
            "--dir",
            dest="out_dir",
            type=Path,
            help="output folder (default: settings.DEMO_MODELS_DIR)",
        )
        parser.add_argument("--force", action="store_true", help="rebuild even if already built")
        parser.add_argument(
            "--no-register",
            dest="register",
            action="store_false",
            help="build the demo adapters' files but do not record them in the database",
        )

    def handle(self, *args, names, out_dir, force, verbosity, register=True, **options):
        unknown = sorted(set(names) - set(DEMO_BUILDERS))
        if unknown:
            choices = ", ".join(DEMO_BUILDERS)
            raise CommandError(f"unknown demo model(s) {', '.join(unknown)}; choose from {choices}")
        out_dir = out_dir or getattr(settings, "DEMO_MODELS_DIR", None)
        if out_dir is None:
            raise CommandError("settings.DEMO_MODELS_DIR is not set; pass --dir")
        root = Path(out_dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        for name in dict.fromkeys(names or DEMO_BUILDERS):  # de-duplicated, order kept
            target = root / name
            if is_built(target) and not force:
                if verbosity >= 1:
                    self.stdout.write(f"{name} already built at {target}")
                continue
            started = time.perf_counter()
            self._build(name, target, show_progress=verbosity >= 1)
            if verbosity >= 1:
                elapsed = time.perf_counter() - started
                line = f"built {name} in {elapsed:.1f} s at {target}"
                self.stdout.write(self.style.SUCCESS(line))
        for name in dict.fromkeys(names or DEMO_BUILDERS):
            if name in DEMO_ADAPTERS:
                self._adapter(name, root, force=force, register=register, verbosity=verbosity)

    def _adapter(self, name: str, root: Path, *, force: bool, register: bool, verbosity: int):
        """The demo model's random LoRA, and its shared adapter row (when migrated)."""
        adapter_id, label, filename = DEMO_ADAPTERS[name]
        path = root / "adapters" / filename
        if force or not path.is_file():
            build_demo_adapter(root / name, path)
            if verbosity >= 1:
                self.stdout.write(self.style.SUCCESS(f"built adapter {label} at {path}"))
        if not register:
            return
        try:
            adapter_register_shared(adapter_id=adapter_id, name=label, base_model=name, path=path)
        except DatabaseError as exc:  # not migrated yet: `make run` migrates first
            if verbosity >= 1:
                self.stdout.write(f"adapter {adapter_id} not registered (database: {exc})")

    def _build(self, name: str, target: Path, *, show_progress: bool) -> None:
        # Same parent folder, so the final rename stays on one filesystem and is atomic.
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it owner-only; workers may run as another user
        try:
            with tqdm(
                total=len(DEMO_STEPS[name]),
                desc=name,
                unit="step",
                file=sys.stderr,
                disable=not show_progress,
                leave=False,
            ) as bar:

                def progress(label: str) -> None:
                    bar.set_postfix_str(label, refresh=False)
                    bar.update()

                DEMO_BUILDERS[name](staging, progress=progress)
            self._swap_into_place(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # no-op once renamed

    @staticmethod
    def _swap_into_place(staging: Path, target: Path) -> None:
        """Replace ``target`` (absent, incomplete or forced) with ``staging``."""
        old = None
        if target.exists() or target.is_symlink():
            # Move the old copy aside first: rename() cannot replace a non-empty folder.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent)) / "model"
            target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            if not is_built(target):  # a concurrent build that finished first is fine
                raise
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)
