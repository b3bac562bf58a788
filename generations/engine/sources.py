"""Where a model's weights come from, and why a model cannot be loaded here, in our words.

A model's `source` is a local folder (a demo model, or weights an operator copied in) or
a model-hub id. `probe` answers, without loading anything, whether this host can load
it: the folder holds a pipeline, or the hub's files are in the local cache, or the hub
can be reached to download them. `explain` turns an exception raised while loading into
a sentence a tenant can act on (the library's own text goes to the worker's log).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from generations.catalog import ModelSpec

logger = logging.getLogger(__name__)

HUB_TIMEOUT_SECONDS = 5.0


def unavailable(model_id: str, reason: str) -> str:
    """The sentence a tenant reads (the 503's message, /v1/models' unavailable_reason)."""
    return f"Model '{model_id}' is not available on this server: {reason}"


def is_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir()


@dataclass(frozen=True)
class Probe:
    """`reason` is None when the model can be loaded here; `cached` says whether its
    files are on this host (so loading needs no network)."""

    reason: str | None
    cached: bool = False


def _hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id=repo_id, filename="model_index.json")
    except Exception:  # noqa: BLE001 - a malformed id is simply not cached
        return False
    return isinstance(found, str)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def probe(spec: ModelSpec) -> Probe:
    source = spec.source
    if is_local(source):
        path = Path(source).expanduser()
        if (path / "model_index.json").exists():
            return Probe(None, cached=True)
        if spec.demo:
            return Probe(
                f"its files have not been built on this server ({path} is empty); the "
                "operator runs `manage.py build_demo_models`."
            )
        return Probe(f"its files are not on this server (no pipeline in {path}).")
    if _hub_cached(source):
        return Probe(None, cached=True)
    if _hub_offline():
        return Probe(
            f"its weights ({source}) have not been downloaded to this server, and downloads "
            "are switched off here (HF_HUB_OFFLINE)."
        )
    return _probe_hub(source)


def _probe_hub(repo_id: str) -> Probe:
    from huggingface_hub import model_info
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        model_info(repo_id, timeout=HUB_TIMEOUT_SECONDS)
    except GatedRepoError:
        return Probe(
            f"its weights ({repo_id}) are gated on the model hub: the server needs an "
            "HF_TOKEN of an account that accepted the model's licence."
        )
    except RepositoryNotFoundError:
        return Probe(f"the model hub has no model '{repo_id}' (or it is private).")
    except Exception as exc:  # noqa: BLE001 - any network failure means the same here
        logger.info("model hub unreachable for %s: %s", repo_id, exc)
        return Probe(
            f"its weights ({repo_id}) are not on this server, and the model hub cannot be "
            "reached to download them."
        )
    return Probe(None, cached=False)


def explain(spec: ModelSpec, exc: BaseException, *, device: str) -> str:
    """Our sentence for an exception raised by loading `spec` (after `probe` passed)."""
    text = str(exc)
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return f"it does not fit in the memory of this server's {device.split(':')[0]}."
    if isinstance(exc, ImportError):
        return (
            "a library it needs is not installed on this server "
            f"({type(exc).__name__}: {getattr(exc, 'name', None) or 'see the worker log'})."
        )
    if isinstance(exc, OSError) and not is_local(spec.source):
        return (
            f"its weights ({spec.source}) could not be fetched from the model hub, and "
            "they are not complete on this server."
        )
    return f"its files at {spec.source} are not a pipeline this server can load."
