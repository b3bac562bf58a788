"""Browser fixtures for the page tests: headless Debian chromium through Playwright."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def browser_page(monkeypatch, **context_options):
    """A Playwright page in headless chromium with these browser-context options;
    confirm() dialogs are accepted. Skips when chromium or Playwright is missing
    (`make install` adds both)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"needs Debian's chromium at {CHROMIUM}")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls
    # (reading what the page did) are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(**context_options)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            yield page
        finally:
            context.close()
            browser.close()
            # The test's ORM calls made while Playwright's loop ran have connections of
            # their own, which nothing else closes: left open, they kept the test
            # database from being dropped at the end of the run (a PytestWarning).
            connections.close_all()


@pytest.fixture
def page(monkeypatch):
    """A browser page at a laptop's size."""
    with browser_page(monkeypatch, viewport={"width": 1366, "height": 860}) as page:
        yield page


@pytest.fixture
def shots() -> Path:
    """Where screenshots go: the test run's output folder (.ci/run: ./test-output)."""
    folder = Path(settings.TEST_OUTPUT_DIR) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
