"""What accounts needs to know from the apps above it, without importing them.

accounts sits below generations: it never imports it. Where it needs an answer only
generations has (which models exist, how many jobs are in flight), generations registers
a function here when it starts (generations/apps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _no_models() -> list[str]:
    return []


def _no_model(name: str) -> str | None:
    return None


def _none_unavailable() -> dict[str, str]:
    return {}


def _no_capabilities() -> dict[str, list[str]]:
    return {}


def _no_jobs() -> dict[str, int]:
    return {}


def _no_history(hours: int = 24) -> dict:
    return {"hours": [], "by_model": {}, "by_organization": {}}


def _no_blocks(*, start, end) -> dict:
    return {"days": [], "by_organization": {}, "by_category": {}}


@dataclass
class Hooks:
    # Catalog model ids, for the key form's allowlist.
    model_ids: Callable[[], list[str]] = field(default=_no_models)
    # {model id: why not} for the models no worker can load now (marked in the key form).
    unavailable_models: Callable[[], dict[str, str]] = field(default=_none_unavailable)
    # {model id: what it does, in words} (shown beside each model in the key form).
    model_capabilities: Callable[[], dict[str, list[str]]] = field(default=_no_capabilities)
    # A model id or alias -> its catalog id (None if unknown).
    resolve_model: Callable[[str], str | None] = field(default=_no_model)
    # Jobs by state for the operator dashboard ({"queued": 3, "running": 1, ...}).
    job_counts: Callable[[], dict[str, int]] = field(default=_no_jobs)
    # Queued jobs per hour by model and by organization (the dashboard's queue charts).
    queue_history: Callable[..., dict] = field(default=_no_history)
    # Moderation blocks per day by organization and by category (the dashboard's charts).
    moderation_history: Callable[..., dict] = field(default=_no_blocks)


hooks = Hooks()


def register(**functions: Callable) -> None:
    for name, function in functions.items():
        if not hasattr(hooks, name):
            raise AttributeError(f"accounts.hooks has no hook named {name!r}")
        setattr(hooks, name, function)
