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
