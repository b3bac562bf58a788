"""Fixtures of the generations tests."""

from __future__ import annotations

import json

import pytest

from generations import catalog


@pytest.fixture
def extra_model(settings, tmp_path):
    """Adds one model to the catalog for the duration of a test."""

    def add(**entry):
        path = tmp_path / "catalog.json"
        path.write_text(json.dumps([entry]))
        settings.MODEL_CATALOG_FILE = str(path)
        catalog.catalog.cache_clear()

    yield add
    catalog.catalog.cache_clear()


@pytest.fixture(scope="session")
def demo_classifiers(tmp_path_factory):
    """The tiny random-weight moderation classifiers (manage.py build_demo_classifiers),
    built once per run: {"text": folder, "image": folder}."""
    from django.core.management import call_command

    from generations.moderation.demo_classifiers import IMAGE, TEXT

    root = tmp_path_factory.mktemp("classifiers")
    call_command("build_demo_classifiers", dir=root, verbosity=0)
    return {"text": root / TEXT, "image": root / IMAGE}


@pytest.fixture
def policy(settings, tmp_path):
    """Writes a moderation policy file and points IMAGEHUB_MODERATION_POLICY at it (the
    in-process worker reads the same settings); returns the loaded policy."""
    from generations.moderation import checks

    counter = [0]

    def use(data: dict):
        counter[0] += 1
        path = tmp_path / f"policy-{counter[0]}.json"
        path.write_text(json.dumps(data))
        settings.MODERATION_POLICY_FILE = str(path)
        return checks.current()

    return use
