#!/usr/bin/env python3
"""The house's import rules, checked over the source (every import, lazy ones too):

1. layers: imagehub/ <- accounts/ <- generations/. A module may import from its own app
   and from the apps below it, never from one above (imagehub's url and settings
   modules name the apps as strings, which is not an import);
2. no import cycles between modules (a cycle hidden in a function-level import counts);
3. the floor plan inside each app (README, "Layout"). Its rooms: `api/` (REST views,
   serializers, urls), `views/` (pages), `worker/` and `engine/` (process folders),
   `management/` (commands) and the root (domain modules: models, services, selectors
   and the like; `apps.py`, the app's wiring, may reach any room):
   - `engine/` is a library: it imports its own modules, the catalog, the types and
     the base app (imagehub) only;
   - `api/` and `worker/` never import each other, nor `api/` and `views/`;
   - root modules import neither `api/`, `views/`, `worker/` nor `engine/`;
   - nothing the HTTP layer (`api/`, `views/`, imagehub.urls) imports reaches
     `engine/`, however many modules lie in between: the web process never loads it.

Exit status 1 and one line per problem when a rule is broken.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["imagehub", "accounts", "generations"]  # lowest first


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for app in LAYERS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """First-party modules that `name` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import module` imports the module.
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


APPS = ["accounts", "generations"]  # the apps with a floor plan
ROOMS = {"api", "views", "worker", "engine", "management", "templatetags"}
WIRING = {"apps"}  # AppConfig.ready: connects the rooms, may import any of them
# What the engine may use of its own app besides itself.
ENGINE_MAY_IMPORT = {"catalog", "types"}


def room(module: str) -> str | None:
    """The room of an app's module: 'api', 'views', ..., 'root' for a domain module,
    'wiring' for apps.py; None outside the apps with a floor plan."""
    parts = module.split(".")
    if parts[0] not in APPS:
        return None
    if len(parts) == 1:
        return "root"
    if parts[1] in ROOMS:
        return parts[1]
    return "wiring" if parts[1] in WIRING else "root"


def _floor_plan_rule(name: str, target: str) -> str | None:
    """Why `name` may not import `target`, or None."""
    here, there = room(name), room(target)
    if here is None or there is None:
        return None
    same_app = name.split(".")[0] == target.split(".")[0]
    if here == "engine" and there != "engine":
        allowed = same_app and target.split(".")[1] in ENGINE_MAY_IMPORT
        if not allowed:
            return "engine/ imports only itself, the catalog, the types and imagehub"
    pairs = {("api", "worker"), ("worker", "api"), ("api", "views"), ("views", "api")}
    if (here, there) in pairs:
        return f"{here}/ and {there}/ never import each other"
    if here == "root" and there in {"api", "views", "worker", "engine"}:
        return f"a domain module imports no {there}/"
    return None


def _http_reaches_engine(graph: dict[str, set[str]]) -> list[str]:
    """One line for each engine module the HTTP layer reaches, with the path."""
    starts = [n for n in graph if room(n) in {"api", "views"} or n == "imagehub.urls"]
    came_from: dict[str, str | None] = {n: None for n in starts}
    queue = list(starts)
    while queue:
        current = queue.pop(0)
        for nxt in sorted(graph[current]):
            if nxt not in came_from:
                came_from[nxt] = current
                queue.append(nxt)
    lines = []
    for module in sorted(came_from):
        if room(module) == "engine":
            path = [module]
            while came_from[path[-1]] is not None:
                path.append(came_from[path[-1]])
            lines.append(
                "web: " + " -> ".join(reversed(path)) + " (the HTTP layer loads the engine)"
            )
    return lines


def problems() -> list[str]:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    lines = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer(target) > layer(name):
                lines.append(f"layer: {name} imports {target} (an app above it)")
            why = _floor_plan_rule(name, target)
            if why is not None:
                lines.append(f"room: {name} imports {target} ({why})")
    lines.extend(_http_reaches_engine(graph))
    for component in cycles(graph):
        lines.append("cycle: " + " <-> ".join(component))
    return lines


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} import rule(s) broken; see .ci/check_imports.py")
        return 1
    print("imports: layers and floor plan respected, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
