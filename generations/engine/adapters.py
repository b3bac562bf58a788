"""LoRA adapters on the cached base pipelines, through diffusers' PEFT integration.

A job's adapters are loaded into the model's modules under their ids
(``load_lora_weights(adapter_name=…)``), set active with their scales for its call
(``set_adapters``), and switched off when the call ends (``disable_lora``), whatever
happened in it. With LoRA switched off, PEFT's layers run their base layer alone, so a
base request after an adapter request gives the base image bit for bit; an adapter at
scale 0 is not applied at all, so it gives the base image too.

Recently used adapters stay loaded (switching back to one costs a ``set_adapters``, not a
load), least recently used first out (``delete_adapters``) when they pass their budget.
Their bytes count in the model cache's budget (generations/engine/cache.py) and they
leave with their model. An adapter that fails to load is removed again; if that fails
too, the model is evicted, so a half-loaded adapter never stays in a cached pipeline.

Everything here runs under the device lock (the engine's), in the batcher's thread.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from generations.catalog import ModelSpec
from generations.engine.cache import PipelineCache, identity
from generations.engine.types import AdapterError, AdapterUse

logger = logging.getLogger(__name__)


class Adapters:
    def __init__(self, cache: PipelineCache, *, budget_bytes: int):
        self.cache = cache
        self.budget_bytes = budget_bytes
        # (model identity, adapter id) -> bytes, least recently used first.
        self._lru: OrderedDict[tuple, int] = OrderedDict()
        # Pipelines whose LoRA is switched on (so the next call must switch it off).
        self.loads = 0
        self.switches = 0
        self.last_load_seconds = 0.0

    def loaded(self, spec: ModelSpec) -> list[str]:
        """Adapter ids loaded into the model's cached pipeline, least recently used first."""
        key = identity(spec)
        return [adapter_id for (model, adapter_id) in self._lru if model == key]

    def used_bytes(self) -> int:
        return sum(self._lru.values())

    def activate(self, spec: ModelSpec, pipe, uses: Sequence[AdapterUse]) -> bool:
        """Load what is missing and set the job's adapters active with their scales.
        Returns whether any adapter is active (then `deactivate` must follow)."""
        active = [use for use in uses if use.scale]
        if not active:
            return False
        if not hasattr(pipe, "load_lora_weights"):
            raise AdapterError(
                active[0].id, f"Model '{spec.id}' ({type(pipe).__name__}) takes no LoRA adapters."
            )
        self._prune()
        entry = self.cache.entry(spec)
        key = identity(spec)
        for use in active:
            if (key, use.id) in self._lru:
                self._lru.move_to_end((key, use.id))
                continue
            self._make_room(use.bytes, keep={(key, u.id) for u in active})
            self._load(spec, pipe, use)
            self._lru[(key, use.id)] = use.bytes
            if entry is not None:
                entry.adapters[use.id] = use.bytes
        self.cache.make_room(spec)
        try:
            pipe.enable_lora()
            pipe.set_adapters([use.id for use in active], [use.scale for use in active])
        except Exception as exc:  # noqa: BLE001 - PEFT's errors: the job's, not the worker's
            self.deactivate(pipe)
            raise AdapterError(active[0].id, f"The adapters could not be applied: {exc}") from exc
        self.switches += 1
        return True

    def deactivate(self, pipe) -> None:
        """LoRA off: the pipeline computes the base model again, bit for bit."""
        pipe.disable_lora()

    def _load(self, spec: ModelSpec, pipe, use: AdapterUse) -> None:
        started = time.perf_counter()
        try:
            pipe.load_lora_weights(use.path, adapter_name=use.id)
        except Exception as exc:  # noqa: BLE001 - a bad file fails its job alone
            logger.warning("adapter %s failed to load on %s: %r", use.id, spec.id, exc)
            self._discard(spec, pipe, use.id)
            raise AdapterError(
                use.id, f"The adapter '{use.id}' could not be loaded on model '{spec.id}': {exc}"
            ) from exc
        self.loads += 1
        self.last_load_seconds = time.perf_counter() - started
        logger.info(
            "loaded adapter %s on %s in %.3fs (%d adapters loaded, %.1f MB)",
            use.id,
            spec.id,
            self.last_load_seconds,
            len(self._lru) + 1,
            (self.used_bytes() + use.bytes) / 2**20,
        )

    def _discard(self, spec: ModelSpec, pipe, adapter_id: str) -> None:
        """Remove a half-loaded adapter; evict the model if even that fails."""
        try:
            if adapter_id in _names(pipe):
                pipe.delete_adapters([adapter_id])
            pipe.disable_lora()
        except Exception:  # noqa: BLE001
            logger.warning("could not remove adapter %s: evicting %s", adapter_id, spec.id)
            self.forget(spec)
            self.cache.evict(spec.id, reason=f"a failed adapter ({adapter_id})")

    def _make_room(self, incoming: int, *, keep: set[tuple]) -> None:
        for key in list(self._lru):
            if self.used_bytes() + incoming <= self.budget_bytes:
                return
            if key in keep:
                continue
            self._unload(key)

    def _unload(self, key: tuple) -> None:
        model, adapter_id = key
        self._lru.pop(key, None)
        entry = self.cache.entry_by_identity(model)
        if entry is None:
            return
        entry.adapters.pop(adapter_id, None)
        try:
            entry.pipe.delete_adapters([adapter_id])
        except Exception:  # noqa: BLE001
            logger.warning("could not unload adapter %s: evicting its model", adapter_id)
            self.cache.evict(entry.ids[0], reason=f"adapter {adapter_id} would not unload")
            return
        logger.info("unloaded adapter %s (least recently used)", adapter_id)

    def forget(self, spec: ModelSpec) -> None:
        """The model left the cache: its adapters went with it."""
        key = identity(spec)
        for entry_key in [k for k in self._lru if k[0] == key]:
            del self._lru[entry_key]

    def _prune(self) -> None:
        """Drop what belonged to models evicted since (their adapters left with them; a
        model loaded again starts with none)."""
        for key in list(self._lru):
            entry = self.cache.entry_by_identity(key[0])
            if entry is None or key[1] not in entry.adapters:
                del self._lru[key]


def _names(pipe) -> set[str]:
    try:
        listed = pipe.get_list_adapters()
    except Exception:  # noqa: BLE001
        return set()
    return {name for names in listed.values() for name in names}
