"""Pipelines: loads catalog models once per process (through the memory-budgeted cache)
and runs them on one device. Knows nothing of Django's ORM or settings: the worker
passes the device and the memory budget in (generations/worker/runtime.py).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import threading
import time
import warnings
from pathlib import Path

from PIL import Image

from generations.catalog import ModelSpec
from generations.engine import accelerate, families, processors, sources
from generations.engine.adapters import Adapters
from generations.engine.cache import (
    MB,
    ModelLoadError,
    PipelineCache,
    UnsupportedTask,
    default_budget_bytes,
    pipeline_bytes,
)
from generations.engine.types import Canceled, OutOfMemory, RunRequest, RunResult
from imagehub import metrics

__all__ = ["Engine", "resolve_device"]

logger = logging.getLogger(__name__)

_LANCZOS = Image.Resampling.LANCZOS
_BILINEAR = Image.Resampling.BILINEAR


def resolve_device(name: str = "auto") -> str:
    import torch

    if name and name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Engine:
    """The process's pipelines (a memory-budgeted cache, generations/engine/cache.py) and the
    code that runs them.

    A diffusers pipeline is not thread-safe (its scheduler keeps per-call state) and one
    device runs one call well at a time, so every call holds the device lock.
    """

    def __init__(
        self, device: str = "auto", *, memory_budget_mb: int = 0, adapter_budget_mb: int = 0
    ):
        """`memory_budget_mb` 0 means most of the device's free memory; the LoRA adapters
        kept loaded take at most `adapter_budget_mb` of it (0: a tenth)."""
        import diffusers
        import transformers

        # Per-component loading bars would drown the job log lines; we log one line per load.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.device = resolve_device(device)
        budget_mb = memory_budget_mb
        self.cache = PipelineCache(
            device=self.device,
            budget_bytes=budget_mb * MB if budget_mb else default_budget_bytes(self.device),
            load=self._load,
            measure=lambda spec, pipe: pipeline_bytes(pipe, offloaded=self._offloads(spec)),
        )
        self.lock = self.cache.lock
        adapter_budget = adapter_budget_mb * MB or self.cache.budget_bytes // 10
        self.adapters = Adapters(self.cache, budget_bytes=adapter_budget)
        self._tokenizers: dict[str, object] = {}
        self._tokenizers_lock = threading.Lock()
        # generations.engine.batcher.Batcher: forms batches; started by the first batchable job.
        self.batcher = None

    # --- loading ------------------------------------------------------------------------
    def pipeline(self, spec: ModelSpec):
        return self.cache.get(spec)

    def derived(self, spec: ModelSpec, task: str):
        """The image-to-image or inpainting pipeline built on the loaded model."""

        def build(base):
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForInpainting if task == "inpaint" else AutoPipelineForImage2Image
            auto = families.derived_pipeline_class(spec, task) or auto
            try:
                pipe = auto.from_pipe(base)
            except (ValueError, KeyError) as exc:
                raise UnsupportedTask(f"Model '{spec.id}' cannot do {task}: {exc}") from exc
            families.repair_derived(pipe)
            pipe.set_progress_bar_config(disable=True)
            return pipe

        return self.cache.derived(spec, task, build)

    def loaded_models(self) -> list[str]:
        return self.cache.loaded()

    @property
    def loads(self):
        """Loads per model id since start (a model evicted and needed again loads again)."""
        return self.cache.loads

    def _offloads(self, spec: ModelSpec) -> bool:
        return spec.cpu_offload and self.device.startswith("cuda")

    def _load(self, spec: ModelSpec):
        import torch

        found = sources.probe(spec)
        if found.reason is not None:
            raise ModelLoadError(sources.unavailable(spec.id, found.reason))
        source = spec.source
        if sources.is_local(source):
            source = str(Path(source).expanduser())
        try:
            pipe = self._from_pretrained(spec, source, cached=found.cached)
            if spec.scheduler:
                import diffusers

                scheduler_class = getattr(diffusers, spec.scheduler)
                pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
            if self._offloads(spec):
                # Each module moves to the device only while it runs.
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe = pipe.to(self.device)
            accelerate.apply(spec, pipe, self.device)  # the catalog's accelerations
        except (torch.OutOfMemoryError, OSError, ValueError, ImportError, RuntimeError) as exc:
            logger.warning("loading model %s from %s failed: %r", spec.id, source, exc)
            reason = sources.explain(spec, exc, device=self.device)
            raise ModelLoadError(sources.unavailable(spec.id, reason)) from exc
        pipe.set_progress_bar_config(disable=True)
        # Kept after an eviction: counting tokens must never reload a model. A copy: a
        # tokenizer keeps its truncation and padding settings in state that every call sets,
        # and counting with the pipeline's own (outside the device lock) while a batch
        # encoded its prompts gave its prompt and negative-prompt embeddings different
        # lengths, failing the whole batch.
        tokenizer = families.tokenizer_of(spec, pipe)
        self._tokenizers[spec.id] = copy.deepcopy(tokenizer) if tokenizer is not None else None
        return pipe

    def _from_pretrained(self, spec: ModelSpec, source: str, *, cached: bool):
        from diffusers import DiffusionPipeline

        with warnings.catch_warnings():
            # diffusers renames torch_dtype to dtype; the old name works on every version.
            warnings.simplefilter("ignore", FutureWarning)
            if not cached and processors.torchvision_missing():
                # Its processors may have to be read from its files (below): fetch them
                # first, as from_pretrained would.
                DiffusionPipeline.download(source)
                cached = True
            # Vision-language processors transformers builds only with torchvision.
            substitutes = processors.substitutes(source, local_files_only=cached)
            pipe = DiffusionPipeline.from_pretrained(
                source,
                torch_dtype=families.dtype_for(spec, self.device),
                # Cached files load without asking the hub (which may be unreachable).
                local_files_only=cached,
                **processors.skipped(substitutes),
            )
        return processors.attach(pipe, substitutes)

    # --- running ------------------------------------------------------------------------
    def text_tokens(self, spec: ModelSpec, texts: list[str]) -> int:
        """Prompt tokens as the model's main text encoder sees them (untruncated)."""
        if spec.id not in self._tokenizers:
            self.pipeline(spec)
        tokenizer = self._tokenizers.get(spec.id)
        if tokenizer is None:
            return 0
        with self._tokenizers_lock:  # job threads count at once
            return sum(
                len(tokenizer(text, truncation=False)["input_ids"]) for text in texts if text
            )

    def run(self, request: RunRequest) -> RunResult:
        """One job's images (see RunRequest); inpainting gives back the pixels it keeps
        unchanged."""
        from generations.engine import latents

        spec, mask, init_image = request.spec, request.mask, request.init_image
        width, height = request.width, request.height

        with self.lock, self._adapters(request):
            _started(request)
            pipe = self.pipeline(spec)
            kwargs = {"prompt": request.prompt}
            if request.references:
                # An instruction edit: the base pipeline takes the images as references.
                kwargs.update(families.reference_kwargs(spec, request.references))
            elif init_image is not None:
                init_image = init_image.convert("RGB").resize((width, height), _LANCZOS)
                kwargs.update(image=init_image, strength=request.strength)
                if mask is not None:
                    mask = mask.convert("L").resize((width, height), _BILINEAR)
                    kwargs["mask_image"] = mask
                pipe = self.derived(spec, "inpaint" if mask is not None else "img2img")
            kwargs.update(self._common(pipe, request, request.seeds))
            kwargs["num_images_per_prompt"] = len(request.seeds)
            callbacks = []
            if request.partial_images and request.on_partial is not None:
                callbacks.append(
                    latents.step_callback(
                        spec, width, height, request.partial_images, request.on_partial
                    )
                )
            if request.should_stop is not None:
                callbacks.append(_stop_callback(request.should_stop))
            if callbacks and families.takes(pipe, "callback_on_step_end"):
                kwargs["callback_on_step_end"] = _chain(callbacks)
            if request.negative_prompt and _negative(spec, pipe):
                kwargs["negative_prompt"] = request.negative_prompt
            images, elapsed = self._call(spec, pipe, kwargs)
        if mask is not None:
            # The pipelines blend in latent space and re-decode every pixel; users expect
            # the pixels they did not mask to come back exactly as they sent them.
            images = [Image.composite(im.convert("RGB"), init_image, mask) for im in images]
        return RunResult(images=images, inference_seconds=elapsed)

    def run_batch(self, requests: list[RunRequest], should_stop=None) -> tuple[list[list], float]:
        """Several text-to-image requests of one batch key in one pipeline call: one
        prompt and one generator per image, so each image depends only on its own request
        and seed. Returns the images of each request and the call's seconds. Either all
        requests have a negative prompt or none (SDXL treats "" and none differently)."""
        first = requests[0]
        spec = first.spec
        prompts = [r.prompt for r in requests for _ in r.seeds]
        negatives = [r.negative_prompt for r in requests for _ in r.seeds]
        seeds = [seed for r in requests for seed in r.seeds]
        # One batch, one adapter set (RunRequest.batch_key).
        with self.lock, self._adapters(first):
            for request in requests:
                _started(request)
            pipe = self.pipeline(spec)
            kwargs = {"prompt": prompts, "num_images_per_prompt": 1}
            kwargs.update(self._common(pipe, first, seeds))
            if should_stop is not None and families.takes(pipe, "callback_on_step_end"):
                kwargs["callback_on_step_end"] = _stop_callback(should_stop)
            if _negative(spec, pipe) and all(negatives):
                kwargs["negative_prompt"] = negatives
            images, elapsed = self._call(spec, pipe, kwargs)
        split, at = [], 0
        for r in requests:
            split.append(images[at : at + len(r.seeds)])
            at += len(r.seeds)
        return split, elapsed

    @contextlib.contextmanager
    def _adapters(self, request: RunRequest):
        """The job's LoRA adapters on for its call, off after it, whatever happens (the
        caller holds the device lock). The derived img2img and inpainting pipelines share
        the base pipeline's modules, so its adapters apply there too."""
        if not request.adapter_set:
            yield
            return
        pipe = self.pipeline(request.spec)
        self.adapters.activate(request.spec, pipe, request.adapters)
        try:
            yield
        finally:
            self.adapters.deactivate(pipe)

    def _common(self, pipe, request: RunRequest, seeds: list[int]) -> dict:
        return families.call_kwargs(pipe, request, seeds)

    def _call(self, spec: ModelSpec, pipe, kwargs: dict) -> tuple[list, float]:
        """One pipeline call (the caller holds the device lock)."""
        import torch

        started = time.perf_counter()
        if spec.emulate_device_seconds:
            images = emulated_images(kwargs, spec.emulate_device_seconds)
            return images, time.perf_counter() - started
        try:
            with torch.inference_mode():
                output = pipe(**kwargs)
        except torch.OutOfMemoryError as exc:
            self.cache.release_memory()
            raise OutOfMemory(str(exc)) from exc
        elapsed = time.perf_counter() - started
        metrics.BATCH_SIZE.labels(spec.id).observe(len(kwargs["generator"]))
        return list(output.images), elapsed


def _started(request: RunRequest) -> None:
    if request.on_device is not None:
        request.on_device()


def emulated_images(kwargs: dict, seconds: float) -> list[Image.Image]:
    """An emulated device's call (benchmarks): wait `seconds` without the GIL, as a GPU
    call does, then give one image per generator at the asked size, different per seed
    and as hard to encode as a diffusion model's."""
    import numpy as np

    time.sleep(seconds)
    width, height = kwargs.get("width", 512), kwargs.get("height", 512)
    base = _emulated_base(width, height)
    images = []
    for generator in kwargs["generator"]:
        shift = int(generator.initial_seed()) % (width * height)
        images.append(Image.fromarray(np.roll(base, shift)))
    return images


@functools.cache
def _emulated_base(width: int, height: int):
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def _stop_callback(should_stop):
    def callback(pipe, step, timestep, callback_kwargs):
        if should_stop():
            raise Canceled()
        return callback_kwargs

    return callback


def _chain(callbacks):
    def callback(pipe, step, timestep, callback_kwargs):
        for each in callbacks:
            callback_kwargs = each(pipe, step, timestep, callback_kwargs)
        return callback_kwargs

    return callback


def _negative(spec: ModelSpec, pipe) -> bool:
    return spec.supports_negative_prompt and families.takes(pipe, "negative_prompt")
