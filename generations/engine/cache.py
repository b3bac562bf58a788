"""The pipeline cache: loaded models kept within a memory budget.

A worker keeps every model it has loaded until loading another would pass its budget
(IMAGEHUB_MODEL_MEMORY_MB; default 90% of the device memory free when the worker starts
on CUDA, 80% of the total RAM on CPU); then the least recently used models go first.

What a model costs is measured, not guessed from its name: its weights are what its torch
modules hold once loaded (parameters and buffers, after any quantization; with CPU
offload only its largest module sits on the device at a time), and one model at a time
also needs room for the activations of its largest call (`activation_bytes`: the most
images one call can carry at the largest size, through the denoiser and the VAE decoder).
The models fit when their weights plus the largest of their activation headrooms fit the
budget (one call runs at a time on a device: the device lock).

One model is never on a device twice: two catalog entries with the same weights and the
same load settings (scheduler, accelerations, offload) share one loaded pipeline, and
loading an entry whose weights are loaded with other settings evicts that copy first.
The image-to-image and inpainting pipelines built on a model share its modules (diffusers'
`from_pipe`; checked when they are built) and leave with it. Each load logs one line with
its seconds, bytes and device.

The cache's lock is the device lock: the engine holds it while a pipeline runs, so no
model is evicted from under a running call.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from generations.catalog import ModelSpec, families
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
    # Room the model's largest call needs for its activations (activation_bytes).
    headroom: int
    # The catalog ids this loaded pipeline serves (entries with the same weights and
    # load settings share it).
    ids: list[str]
    # "img2img" | "inpaint" -> a pipeline sharing this one's modules (diffusers' from_pipe).
    derived: dict[str, object] = field(default_factory=dict)
    # LoRA adapters loaded into this pipeline's modules: adapter id -> device bytes
    # (generations/engine/adapters.py keeps them; they count in the budget and leave with
    # the model).
    adapters: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return self.bytes + sum(self.adapters.values())


def weights_of(spec: ModelSpec) -> str:
    """Where the weights come from: a resolved local folder or a hub id."""
    source = spec.source
    if source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir():
        return str(Path(source).expanduser().resolve())
    return source


def identity(spec: ModelSpec) -> tuple:
    """What makes a loaded pipeline: its weights and everything its load changes. Two
    catalog entries with the same identity share one loaded pipeline."""
    return (
        weights_of(spec),
        spec.architecture,
        spec.scheduler,
        spec.cpu_offload,
        spec.compile,
        spec.compile_fullgraph,
        spec.compile_batch_sizes,
        spec.compile_sizes,
        spec.fuse_qkv,
        spec.channels_last,
        spec.quantize,
        spec.attention_backend,
    )


def largest_call(spec: ModelSpec) -> tuple[int, int]:
    """(images, pixels per image) of the largest pipeline call the model can get: a job's
    n images at the largest size, or a full batch at the largest batchable size."""
    alone = (spec.max_n, spec.max_pixels)
    if spec.max_batch_images <= 1:
        return alone
    batched = (
        max(spec.max_batch_images, spec.max_n),
        min(spec.max_batch_pixels, spec.max_pixels),
    )
    return max(alone, batched, key=lambda c: c[0] * c[1])


# The estimate's factors (bytes of live activations per element of the widest tensor).
# VAE decoder: its full-resolution up blocks hold about eight tensors of W x H x the first
# block's channels at once (input, norms, convolution outputs, the residual, upsampling).
# Denoiser: about 24 tensors of tokens x hidden width per step (attention's q, k, v and
# output, the MLP's 4x expansion, norms, residuals; SDPA keeps no token x token matrix).
VAE_LIVE_TENSORS = 8
DENOISER_LIVE_TENSORS = 24


def activation_bytes(spec: ModelSpec, pipe) -> int:
    """An estimate of the device memory the model's largest call needs beyond its
    weights: latent size x channels x batch, from the pipeline's own configs.

    Per family: the denoiser's width (heads x head size; Z-Image's `dim`; a UNet's widest
    block), its tokens per image (the family's latent geometry), the reference images an
    instruction edit adds to the sequence (each at the largest size its pipeline feeds,
    about 1 MP: FLUX.2 takes up to 10), and classifier-free guidance doubling the batch
    only where the pipeline runs both passes in one call (Qwen-Image and Chroma run
    them one after the other)."""
    import torch

    images, pixels = largest_call(spec)
    dtype = getattr(pipe, "dtype", torch.float32)
    element = torch.empty((), dtype=dtype).element_size()
    vae = images * pixels * _vae_width(getattr(pipe, "vae", None)) * element * VAE_LIVE_TENSORS
    denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    tokens = pixels // spec.latent_pixels**2
    if spec.can(families.EDIT_INSTRUCTION):
        tokens += spec.input_images * spec.reference_tokens(1024, 1024)
    batched = spec.supports_negative_prompt and spec.family.cfg_batched
    guided = 2 if batched else 1
    steps = images * guided * tokens * _denoiser_width(denoiser) * element * DENOISER_LIVE_TENSORS
    return int(vae + steps)


def _vae_width(vae) -> int:
    """Channels of the VAE decoder's full-resolution blocks."""
    blocks = _config_value(vae, "block_out_channels", None)
    if blocks:
        return blocks[0]
    base = _config_value(vae, "base_dim", None)  # Wan-style VAEs (Qwen-Image)
    return base if isinstance(base, int) else 128


def _denoiser_width(denoiser) -> int:
    heads = _config_value(denoiser, "num_attention_heads", None)
    head_dim = _config_value(denoiser, "attention_head_dim", None)
    if isinstance(heads, int) and isinstance(head_dim, int):
        return heads * head_dim  # transformers (FLUX, SD3, Qwen-Image, PixArt)
    dim = _config_value(denoiser, "dim", None)
    if isinstance(dim, int):
        return dim  # Z-Image
    return max(_config_value(denoiser, "block_out_channels", [320]))  # UNets


def _config_value(module, name: str, default):
    config = getattr(module, "config", None)
    value = getattr(config, name, None) if config is not None else None
    return default if value is None else value


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
    """CUDA: 90% of the memory free now (the rest: the CUDA context's own growth and
    the allocator's fragmentation; activations are budgeted per model). CPU: 80% of RAM."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free * 0.9)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.8)


def shares_modules(base, derived) -> bool:
    """True when every torch module of `derived` is one of `base`'s (no copy was made)."""
    import torch

    ours = {id(c) for c in base.components.values() if isinstance(c, torch.nn.Module)}
    theirs = [c for c in derived.components.values() if isinstance(c, torch.nn.Module)]
    return all(id(c) in ours for c in theirs)


class PipelineCache:
    def __init__(
        self,
        *,
        device: str,
        budget_bytes: int,
        load: Callable[[ModelSpec], object],
        measure: Callable[[ModelSpec, object], int],
        headroom: Callable[[ModelSpec, object], int] = activation_bytes,
    ):
        self.device = device
        self.budget_bytes = budget_bytes
        self._load = load
        self._measure = measure
        self._headroom = headroom
        # identity(spec) -> entry, least recently used first.
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        # Last measured (weights, headroom), kept after eviction to make room before a reload.
        self._sizes: dict[tuple, tuple[int, int]] = {}
        self.loads: Counter[str] = Counter()
        self.lock = threading.RLock()

    def get(self, spec: ModelSpec):
        with self.lock:
            key = identity(spec)
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                if spec.id not in entry.ids:
                    entry.ids.append(spec.id)
                return entry.pipe
            self._evict_other_copies(key, reason=spec.id)
            # Make room before loading when the size is known from an earlier load.
            weights, headroom = self._sizes.get(key, (0, 0))
            self._evict_until(weights, headroom, reason=spec.id)
            started = time.perf_counter()
            pipe = self._load_with_room(spec)
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.synchronize(torch.device(self.device))
            seconds = time.perf_counter() - started
            weights, headroom = self._measure(spec, pipe), self._headroom(spec, pipe)
            self._sizes[key] = (weights, headroom)
            self._entries[key] = _Entry(pipe=pipe, bytes=weights, headroom=headroom, ids=[spec.id])
            self.loads[spec.id] += 1
            self._log_load(spec, pipe, seconds, weights, headroom)
            self._evict_until(0, 0, reason=spec.id, keep=key)
            metrics.LOADED_MODELS.set(len(self._entries))
            return pipe

    def derived(self, spec: ModelSpec, task: str, build: Callable[[object], object]):
        with self.lock:
            base = self.get(spec)
            entry = self._entries[identity(spec)]
            if task not in entry.derived:
                pipe = build(base)
                if not shares_modules(base, pipe):
                    # A second copy of the weights would break the budget unseen.
                    raise ModelLoadError(
                        f"Model '{spec.id}': its {task} pipeline does not share the loaded "
                        "model's modules"
                    )
                entry.derived[task] = pipe
            return entry.derived[task]

    def loaded(self) -> list[str]:
        """The catalog ids served by loaded pipelines, least recently used first."""
        with self.lock:
            return [model_id for entry in self._entries.values() for model_id in entry.ids]

    def used_bytes(self) -> int:
        """Weights of the loaded models plus the largest activation headroom among them."""
        return self._need(0, 0)

    def _need(self, weights: int, headroom: int) -> int:
        entries = self._entries.values()
        return (
            sum(entry.total_bytes for entry in entries)
            + weights
            + max([headroom, *(entry.headroom for entry in entries)])
        )

    def entry(self, spec: ModelSpec) -> _Entry | None:
        """The loaded pipeline's entry (the caller holds the lock)."""
        return self._entries.get(identity(spec))

    def entry_by_identity(self, key: tuple) -> _Entry | None:
        return self._entries.get(key)

    def make_room(self, spec: ModelSpec) -> None:
        """After the model's entry grew (adapters loaded into it): evict other models,
        least recently used first, until the budget holds again."""
        with self.lock:
            self._evict_until(0, 0, reason=spec.id, keep=identity(spec))

    def evict(self, model_id: str, *, reason: str = "") -> None:
        with self.lock:
            for key, entry in list(self._entries.items()):
                if model_id in entry.ids:
                    self._evict_key(key, reason=reason)

    def _evict_key(self, key: tuple, *, reason: str) -> None:
        entry = self._entries.pop(key)
        entry.derived.clear()
        logger.info(
            "evicted model %s (%.0f MB)%s",
            ", ".join(entry.ids),
            entry.bytes / MB,
            f" to make room for {reason}" if reason else "",
        )
        del entry
        metrics.LOADED_MODELS.set(len(self._entries))
        self.release_memory()

    def release_memory(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _evict_other_copies(self, key: tuple, *, reason: str) -> None:
        """The same weights loaded with other settings leave before this copy loads."""
        for other in [k for k in self._entries if k[0] == key[0] and k != key]:
            logger.warning(
                "model %s uses the weights of loaded model %s with other load settings: "
                "evicting it (give both catalog entries the same scheduler and accelerations "
                "to share one copy)",
                reason,
                ", ".join(self._entries[other].ids),
            )
            self._evict_key(other, reason=reason)

    def _evict_until(
        self, weights: int, headroom: int, *, reason: str, keep: tuple | None = None
    ) -> None:
        """Evict least recently used models until `weights` (with `headroom`) more fit."""
        for key in list(self._entries):
            if self._need(weights, headroom) <= self.budget_bytes:
                return
            if key != keep:
                self._evict_key(key, reason=reason)
        if self._need(weights, headroom) > self.budget_bytes:
            logger.warning(
                "model %s alone (%.0f MB with its activations) is over the memory budget (%.0f MB)",
                reason,
                self._need(weights, headroom) / MB,
                self.budget_bytes / MB,
            )

    def _log_load(self, spec: ModelSpec, pipe, seconds: float, weights: int, headroom: int):
        from generations.engine import accelerate

        images, pixels = largest_call(spec)
        done = accelerate.applied(pipe)
        logger.info(
            "loaded model %s (%s) on %s in %.2fs: %.0f MB weights, %.0f MB activation "
            "headroom (%d images of %.2f MP)%s",
            spec.id,
            type(pipe).__name__,
            self.device,
            seconds,
            weights / MB,
            headroom / MB,
            images,
            pixels / 1e6,
            f"; accelerations: {', '.join(done)}" if done else "",
        )

    def _load_with_room(self, spec: ModelSpec):
        try:
            return self._load(spec)
        except ModelLoadError as exc:
            if not _out_of_memory(exc) or not self._entries:
                raise
        # It did not fit next to the others: evict them all and try once more.
        logger.warning("model %s did not fit next to %s; evicting", spec.id, self.loaded())
        for key in list(self._entries):
            self._evict_key(key, reason=spec.id)
        return self._load(spec)


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc.__cause__, torch.OutOfMemoryError)
