"""The engine's public types: what a run asks for, what it gives back, how it fails."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from generations.catalog import ModelSpec
from generations.engine.cache import ModelLoadError

__all__ = [
    "AdapterError",
    "AdapterUse",
    "Canceled",
    "ModelLoadError",
    "OutOfMemory",
    "RunRequest",
    "RunResult",
]


class OutOfMemory(Exception):
    pass


class Canceled(Exception):
    """Raised between two denoising steps when the job was asked to stop."""


class AdapterError(Exception):
    """A LoRA adapter of the job could not be loaded or applied (a corrupt file, tensors
    that do not fit the model); the job fails with `adapter_error`, nothing else does."""

    def __init__(self, adapter_id: str, message: str):
        super().__init__(message)
        self.adapter_id = adapter_id


@dataclass(frozen=True)
class AdapterUse:
    """One LoRA of a job: its id (the adapter's name on the pipeline), its local
    .safetensors file, its size in bytes and the scale it runs at."""

    id: str
    path: str
    scale: float
    bytes: int = 0


@dataclass
class RunRequest:
    """One job's images: text-to-image; image-to-image with `init_image` (and
    `strength`); inpainting with `mask` too ('L', white = repaint); an instruction edit with
    `references`. With
    `partial_images`, `on_partial(k, image)` gets previews as the steps run;
    `should_stop()` is asked after every step and ends the run with Canceled; `on_device()`
    is called when the device starts on it."""

    spec: ModelSpec
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seeds: list[int]
    init_image: Any = None
    mask: Any = None
    strength: float | None = None
    # An instruction edit's reference images (PIL), handed to the model's own pipeline.
    references: list = field(default_factory=list)
    partial_images: int = 0
    on_partial: Callable[[int, Any], None] | None = None
    should_stop: Callable[[], bool] | None = None
    # Called once when the device begins the call that makes this job's images (the
    # worker counts the jobs it claimed that the device has not started yet).
    on_device: Callable[[], None] | None = None
    # LoRA adapters applied for this call only (generations/engine/adapters.py).
    adapters: tuple[AdapterUse, ...] = ()

    @property
    def images(self) -> int:
        return len(self.seeds)

    @property
    def may_share_a_batch(self) -> bool:
        """Plain text-to-image that fits the model's batch limits (an input image or
        previews make a job run alone)."""
        return (
            self.init_image is None
            and not self.references
            and not self.partial_images
            and self.width * self.height <= self.spec.max_batch_pixels
            and self.spec.max_batch_images > 1
        )

    def batch_key(self) -> tuple:
        with_negative = bool(self.negative_prompt) and self.spec.supports_negative_prompt
        return (
            self.spec.id,
            self.width,
            self.height,
            self.steps,
            self.guidance_scale,
            with_negative,
            self.adapter_set,
        )

    @property
    def adapter_set(self) -> tuple:
        """The adapters that change the call (scale 0 changes nothing): one pipeline call
        runs one set, so only jobs with the same set share a batch."""
        return tuple((use.id, use.scale) for use in self.adapters if use.scale)


@dataclass
class RunResult:
    images: list  # PIL images, one per seed, in order
    inference_seconds: float
    # Time the job waited for the device (other batches, batch forming).
    device_wait_seconds: float = 0.0
