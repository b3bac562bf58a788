"""The house's import rules (.ci/check_imports.py) hold: imagehub <- accounts <-
generations, and no import cycles."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("check_imports", ROOT / ".ci/check_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_flow_one_way_without_cycles():
    assert _checker().problems() == []


def test_the_checker_sees_a_lazy_import_up_the_layers_and_a_cycle(tmp_path, monkeypatch):
    checker = _checker()
    for app, body in {
        "imagehub": "",
        "accounts": "def f():\n    from generations import a\n",
        "generations": "",
    }.items():
        (tmp_path / app).mkdir()
        (tmp_path / app / "__init__.py").write_text("")
        (tmp_path / app / "mod.py").write_text(body)
    (tmp_path / "generations" / "a.py").write_text("from generations import b\n")
    (tmp_path / "generations" / "b.py").write_text("import generations.a\n")
    monkeypatch.setattr(checker, "ROOT", tmp_path)
    found = checker.problems()
    assert "layer: accounts.mod imports generations.a (an app above it)" in found
    assert "cycle: generations.a <-> generations.b" in found
