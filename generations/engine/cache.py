"""The pipeline cache: loaded models kept within a memory budget.

A worker keeps every model it has loaded until loading another would pass its budget
(IMAGEHUB_MODEL_MEMORY_MB; default 80% of the free device memory on CUDA, of the total
RAM on CPU); then the least recently used models go first. A model's size is what its
torch modules hold (parameters and buffers); with CPU offload only its largest module
sits on the device at a time. The image-to-image and inpainting pipelines built on a
model share its weights and leave with it.

The cache's lock is the device lock: the engine holds it while a pipeline runs, so no
model is evicted from under a running call.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from generations.catalog import ModelSpec
from imagehub import metrics

logger = logging.getLogger(__name__)

MB = 1024 * 1024


class ModelLoadError(Exception):
    """The model cannot be loaded here (missing files, no network, bad id, out of memory)."""


class UnsupportedTask(ModelLoadError):
    """The model loads, but cannot do this task (an edit with a model without img2img)."""


@dataclass
class _Entry:
    pipe: object
    bytes: int
    # "img2img" | "inpaint" -> a pipeline sharing this one's modules (diffusers' from_pipe).
    derived: dict[str, object] = field(default_factory=dict)


def module_bytes(module) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in (*module.parameters(), *module.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def pipeline_bytes(pipe, *, offloaded: bool = False) -> int:
    """Device bytes a pipeline holds: all its modules, or the largest one when offloaded."""
    import torch

    sizes = [
        module_bytes(component)
        for component in pipe.components.values()
        if isinstance(component, torch.nn.Module)
    ]
    if not sizes:
        return 0
    return max(sizes) if offloaded else sum(sizes)


def default_budget_bytes(device: str) -> int:
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free * 0.8)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)


class PipelineCache:
    def __init__(
        self,
        *,
        device: str,
        budget_bytes: int,
        load: Callable[[ModelSpec], object],
        measure: Callable[[ModelSpec, object], int],
    ):
        self.device = device
        self.budget_bytes = budget_bytes
        self._load = load
        self._measure = measure
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._sizes: dict[str, int] = {}  # last measured size, kept after eviction
        self.loads: Counter[str] = Counter()
        self.lock = threading.RLock()

    def get(self, spec: ModelSpec):
        with self.lock:
            entry = self._entries.get(spec.id)
            if entry is not None:
                self._entries.move_to_end(spec.id)
                return entry.pipe
            # Make room before loading when the size is known from an earlier load.
            self._evict_until(self._sizes.get(spec.id, 0), reason=spec.id)
            pipe = self._load_with_room(spec)
            size = self._measure(spec, pipe)
            self._sizes[spec.id] = size
            self._entries[spec.id] = _Entry(pipe=pipe, bytes=size)
            self.loads[spec.id] += 1
            self._evict_until(0, reason=spec.id, keep=spec.id)
            metrics.LOADED_MODELS.set(len(self._entries))
            return pipe

    def derived(self, spec: ModelSpec, task: str, build: Callable[[object], object]):
        with self.lock:
            base = self.get(spec)
            entry = self._entries[spec.id]
            if task not in entry.derived:
                entry.derived[task] = build(base)
            return entry.derived[task]

    def loaded(self) -> list[str]:
        with self.lock:
            return list(self._entries)

    def used_bytes(self) -> int:
        return sum(entry.bytes for entry in self._entries.values())

    def evict(self, model_id: str, *, reason: str = "") -> None:
        with self.lock:
            entry = self._entries.pop(model_id, None)
            if entry is None:
                return
            entry.derived.clear()
            del entry
            logger.info(
                "evicted model %s (%.0f MB)%s",
                model_id,
                self._sizes.get(model_id, 0) / MB,
                f" to make room for {reason}" if reason else "",
            )
            metrics.LOADED_MODELS.set(len(self._entries))
            self.release_memory()

    def release_memory(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _evict_until(self, incoming: int, *, reason: str, keep: str | None = None) -> None:
        """Evict least recently used models until `incoming` more bytes fit."""
        for model_id in list(self._entries):
            if self.used_bytes() + incoming <= self.budget_bytes:
                return
            if model_id != keep:
                self.evict(model_id, reason=reason)
        if self.used_bytes() + incoming > self.budget_bytes:
            logger.warning(
                "model %s alone (%.0f MB) is over the memory budget (%.0f MB)",
                reason,
                max(incoming, self.used_bytes()) / MB,
                self.budget_bytes / MB,
            )

    def _load_with_room(self, spec: ModelSpec):
        try:
            return self._load(spec)
        except ModelLoadError as exc:
            if not _out_of_memory(exc) or not self._entries:
                raise
        # It did not fit next to the others: evict them all and try once more.
        logger.warning("model %s did not fit next to %s; evicting", spec.id, self.loaded())
        for model_id in list(self._entries):
            self.evict(model_id, reason=spec.id)
        return self._load(spec)


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc.__cause__, torch.OutOfMemoryError)
