"""The house's import rules (.ci/check_imports.py) hold: imagehub <- accounts <-
generations, no import cycles, and each app's floor plan (api/, views/, worker/, engine/
and the domain modules at the root; README, "Layout"). The checker itself is tried on
small trees that break each rule."""

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


def _tree(tmp_path, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        for parent in path.relative_to(tmp_path).parents:
            if str(parent) != ".":
                (tmp_path / parent / "__init__.py").touch()


def test_the_checker_sees_rooms_out_of_place(tmp_path, monkeypatch):
    checker = _checker()
    _tree(
        tmp_path,
        {
            "imagehub/metrics.py": "",
            "accounts/models.py": "",
            "generations/catalog.py": "",
            "generations/models.py": "",
            "generations/services.py": "from generations.api import views\n",
            "generations/apps.py": "from generations.worker import actors\n",
            "generations/formats.py": "",
            "generations/api/views.py": "from generations import services, presenters\n",
            "generations/api/serializers.py": "from generations.worker import actors\n",
            "generations/presenters.py": "from generations import formats\n",
            "generations/worker/actors.py": "from generations.engine import pipelines\n",
            "generations/engine/pipelines.py": (
                "from generations import catalog\nfrom imagehub import metrics\n"
                "def f():\n    from generations import models\n"
            ),
        },
    )
    monkeypatch.setattr(checker, "ROOT", tmp_path)
    found = checker.problems()
    assert (
        "room: generations.services imports generations.api.views (a domain module "
        "imports no api/)" in found
    )
    assert (
        "room: generations.api.serializers imports generations.worker.actors "
        "(api/ and worker/ never import each other)" in found
    )
    assert any(
        line.startswith("room: generations.engine.pipelines imports generations.models")
        for line in found
    )
    # apps.py wires the rooms; the engine may use the catalog and imagehub.
    assert not any("generations.apps imports" in line for line in found)
    assert not any("imports generations.catalog" in line for line in found)
    # The API reaches the engine through the worker: the web process would load it.
    assert (
        "web: generations.api.serializers -> generations.worker.actors -> "
        "generations.engine.pipelines (the HTTP layer loads the engine)"
    ) in found


def test_the_checker_sees_the_web_reach_the_engine_through_domain_modules(tmp_path, monkeypatch):
    checker = _checker()
    _tree(
        tmp_path,
        {
            "imagehub/urls.py": "def f():\n    from generations.api import streaming\n",
            "accounts/models.py": "",
            "generations/previews.py": "def g():\n    from generations.engine import encoding\n",
            "generations/api/streaming.py": "from generations import previews\n",
            "generations/engine/encoding.py": "",
        },
    )
    monkeypatch.setattr(checker, "ROOT", tmp_path)
    found = checker.problems()
    assert (
        "room: generations.previews imports generations.engine.encoding (a domain "
        "module imports no engine/)" in found
    )
    assert (
        "web: generations.api.streaming -> generations.previews -> generations.engine.encoding "
        "(the HTTP layer loads the engine)"
    ) in found
