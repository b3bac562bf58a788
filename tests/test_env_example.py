""".env.example documents exactly the settings that imagehub/settings.py reads, so an
operator copying it misses none and is never told of one that does nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# env_str("NAME", ...), env_int(\n    "NAME", ...) and the like (imagehub/env.py).
ENV_READ = re.compile(r"\benv_(?:str|int|float|bool|list|choice)\(\s*\"([A-Z][A-Z0-9_]*)\"")
# "NAME=value" or "# NAME=default" at the start of a line; descriptions never match.
ENV_LINE = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def settings_names() -> set[str]:
    return set(ENV_READ.findall((ROOT / "imagehub" / "settings.py").read_text()))


def example_names() -> list[str]:
    return ENV_LINE.findall((ROOT / ".env.example").read_text())


def test_the_patterns_find_what_they_should():
    assert {"DATABASE_URL", "DRAMATIQ_BROKER_URL", "REDIS_URL", "STORAGE"} <= settings_names()
    # A reader call split over lines (env_choice(\n "NAME", ...)) is found too.
    assert "IMAGEHUB_DEFAULT_RESPONSE_FORMAT" in settings_names()
    assert len(settings_names()) > 40


def test_every_setting_is_in_env_example():
    missing = settings_names() - set(example_names())
    assert not missing, f"add to .env.example (with default and meaning): {sorted(missing)}"


def test_env_example_lists_only_real_settings():
    unknown = set(example_names()) - settings_names()
    assert not unknown, f"not read by imagehub/settings.py: {sorted(unknown)}"


def test_env_example_lists_each_setting_once():
    names = example_names()
    assert sorted(names) == sorted(set(names))


def test_env_example_sets_nothing_by_default():
    # An uncommented "NAME=" would set an empty value, which is not the default
    # (an empty IMAGEHUB_API_KEY_SECRET would sign every key with an empty secret).
    active = [
        line
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert active == []
