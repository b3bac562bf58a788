"""build_demo_classifiers: write the tiny random-weight moderation classifiers to disk.

    manage.py build_demo_classifiers [--dir DIR] [--force]

Builds demo-text-classifier and demo-image-classifier (labels `safe`, `unsafe`) into
``settings.DEMO_MODELS_DIR`` (or DIR), for trying the policy file's classifier paths
without a model hub (README, "Moderation").
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from generations.moderation.demo_classifiers import BUILDERS, is_built


class Command(BaseCommand):
    help = "Build the tiny random-weight moderation classifiers (no network needed)."

    def add_arguments(self, parser):
        parser.add_argument("--dir", dest="out_dir", type=Path, help="output folder")
        parser.add_argument("--force", action="store_true", help="rebuild even if built")

    def handle(self, *args, out_dir, force, verbosity, **options):
        root = Path(out_dir or settings.DEMO_MODELS_DIR).resolve()
        for name, build in BUILDERS.items():
            target = root / name
            if is_built(target) and not force:
                if verbosity >= 1:
                    self.stdout.write(f"{name} already built at {target}")
                continue
            build(target)
            if verbosity >= 1:
                self.stdout.write(self.style.SUCCESS(f"built {name} at {target}"))
