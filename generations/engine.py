"""The diffusers engine: loads catalog models once per process and runs them.

Workers import this; the web process never does (it never runs a model).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from PIL import Image

from generations.cache import (
    MB,
    ModelLoadError,
    PipelineCache,
    default_budget_bytes,
    pipeline_bytes,
)
from generations.catalog import ModelSpec
from imagehub import metrics

__all__ = ["Canceled", "Engine", "ModelLoadError", "OutOfMemory", "RunResult", "get_engine"]

logger = logging.getLogger("generations.engine")

SEED_MODULUS = 2**63
_LANCZOS = Image.Resampling.LANCZOS
_BILINEAR = Image.Resampling.BILINEAR


class OutOfMemory(Exception):
    pass


class Canceled(Exception):
    """Raised between two denoising steps when the job was asked to stop."""


@dataclass
class RunResult:
    images: list  # PIL images, one per seed, in order
    inference_seconds: float
    # Time the job waited for the device (other batches, batch forming).
    device_wait_seconds: float = 0.0


def resolve_device(name: str = "auto") -> str:
    import torch

    if name and name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _dtype_for(spec: ModelSpec, device: str):
    import torch

    if device.startswith("cuda"):
        # FLUX and SD3 are trained in bf16; SD/SDXL VAEs overflow in bf16-less fp16 less often.
        if spec.architecture in ("flux", "sd3"):
            return torch.bfloat16
        return torch.float16
    return torch.float32


def _is_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or os.path.isdir(source)


class Engine:
    """The process's pipelines (a memory-budgeted cache, generations/cache.py) and the
    code that runs them.

    A diffusers pipeline is not thread-safe (its scheduler keeps per-call state) and one
    device runs one call well at a time, so every call holds the device lock.
    """

    def __init__(self, device: str | None = None, *, memory_budget_mb: int | None = None):
        import diffusers
        import transformers

        # Per-component loading bars would drown the job log lines; we log one line per load.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.device = resolve_device(device or settings.DEVICE)
        budget_mb = settings.MODEL_MEMORY_MB if memory_budget_mb is None else memory_budget_mb
        self.cache = PipelineCache(
            device=self.device,
            budget_bytes=budget_mb * MB if budget_mb else default_budget_bytes(self.device),
            load=self._load,
            measure=lambda spec, pipe: pipeline_bytes(pipe, offloaded=self._offloads(spec)),
        )
        self.lock = self.cache.lock
        self._tokenizers: dict[str, object] = {}
        # generations.executor.Executor: forms batches; started by the first batchable job.
        self.executor = None

    # --- loading ------------------------------------------------------------------------
    def pipeline(self, spec: ModelSpec):
        return self.cache.get(spec)

    def derived(self, spec: ModelSpec, task: str):
        """The image-to-image or inpainting pipeline built on the loaded model."""

        def build(base):
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForInpainting if task == "inpaint" else AutoPipelineForImage2Image
            try:
                pipe = auto.from_pipe(base)
            except (ValueError, KeyError) as exc:
                raise ModelLoadError(f"Model '{spec.id}' cannot do {task}: {exc}") from exc
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
        from diffusers import DiffusionPipeline

        source = spec.source
        if _is_local(source):
            path = Path(source).expanduser()
            if not (path / "model_index.json").exists():
                hint = " Run `manage.py build_demo_models`." if spec.demo else ""
                raise ModelLoadError(f"Model '{spec.id}' has no files at {path}.{hint}")
            source = str(path)
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # diffusers renames torch_dtype to dtype; the old name works on every version.
                warnings.simplefilter("ignore", FutureWarning)
                pipe = DiffusionPipeline.from_pretrained(
                    source, torch_dtype=_dtype_for(spec, self.device)
                )
            if spec.scheduler:
                import diffusers

                scheduler_class = getattr(diffusers, spec.scheduler)
                pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
            if self._offloads(spec):
                # Each module moves to the device only while it runs.
                pipe.enable_model_cpu_offload(device=self.device)
            else:
                pipe = pipe.to(self.device)
        except torch.OutOfMemoryError as exc:
            raise ModelLoadError(
                f"Model '{spec.id}' does not fit in {self.device} memory: {exc}"
            ) from exc
        except (OSError, ValueError, ImportError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"Model '{spec.id}' could not be loaded from {source}: {reason}"
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        name = {"flux": "tokenizer_2", "sd3": "tokenizer_3"}.get(spec.architecture, "tokenizer")
        # Kept after an eviction: counting tokens must never reload a model.
        self._tokenizers[spec.id] = getattr(pipe, name, None) or getattr(pipe, "tokenizer", None)
        logger.info(
            "loaded model %s (%s) on %s in %.2fs",
            spec.id,
            type(pipe).__name__,
            self.device,
            time.perf_counter() - started,
        )
        return pipe

    # --- running ------------------------------------------------------------------------
    def text_tokens(self, spec: ModelSpec, texts: list[str]) -> int:
        """Prompt tokens as the model's main text encoder sees them (untruncated)."""
        if spec.id not in self._tokenizers:
            self.pipeline(spec)
        tokenizer = self._tokenizers.get(spec.id)
        if tokenizer is None:
            return 0
        return sum(len(tokenizer(text, truncation=False)["input_ids"]) for text in texts if text)

    def run(
        self,
        spec: ModelSpec,
        *,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        steps: int,
        guidance_scale: float,
        seeds: list[int],
        init_image=None,
        mask=None,
        strength: float | None = None,
        partial_images: int = 0,
        on_partial=None,
        should_stop=None,
    ) -> RunResult:
        """Text-to-image; image-to-image with `init_image` (and `strength`); inpainting
        with `mask` too ('L', white = repaint): the pixels it keeps come back unchanged.
        With `partial_images`, `on_partial(k, image)` gets previews as the steps run;
        `should_stop()` is asked after every step and ends the run with Canceled."""
        from generations import previews

        with self.lock:
            pipe = self.pipeline(spec)
            kwargs = {"prompt": prompt}
            if init_image is not None:
                init_image = init_image.convert("RGB").resize((width, height), _LANCZOS)
                kwargs.update(image=init_image, strength=strength)
                if mask is not None:
                    mask = mask.convert("L").resize((width, height), _BILINEAR)
                    kwargs["mask_image"] = mask
                pipe = self.derived(spec, "inpaint" if mask is not None else "img2img")
            kwargs.update(self._common(spec, pipe, width, height, steps, guidance_scale, seeds))
            kwargs["num_images_per_prompt"] = len(seeds)
            callbacks = []
            if partial_images and on_partial is not None:
                callbacks.append(
                    previews.step_callback(spec, width, height, partial_images, on_partial)
                )
            if should_stop is not None:
                callbacks.append(_stop_callback(should_stop))
            if callbacks:
                kwargs["callback_on_step_end"] = _chain(callbacks)
            if negative_prompt and spec.supports_negative_prompt:
                kwargs["negative_prompt"] = negative_prompt
            images, elapsed = self._call(spec, pipe, kwargs)
        if mask is not None:
            # The pipelines blend in latent space and re-decode every pixel; users expect
            # the pixels they did not mask to come back exactly as they sent them.
            images = [Image.composite(im.convert("RGB"), init_image, mask) for im in images]
        return RunResult(images=images, inference_seconds=elapsed)

    def run_batch(
        self,
        spec: ModelSpec,
        *,
        requests: list[tuple[str, str, list[int]]],
        width: int,
        height: int,
        steps: int,
        guidance_scale: float,
        should_stop=None,
    ) -> tuple[list[list], float]:
        """Several text-to-image requests (prompt, negative prompt, seeds) in one pipeline
        call: one prompt and one generator per image, so each image depends only on its
        own request and seed. Returns the images of each request and the call's seconds.
        Either all requests have a negative prompt or none (SDXL treats "" and none
        differently)."""
        prompts = [prompt for prompt, _, seeds in requests for _ in seeds]
        negatives = [negative for _, negative, seeds in requests for _ in seeds]
        seeds = [seed for _, _, each in requests for seed in each]
        with self.lock:
            pipe = self.pipeline(spec)
            kwargs = {"prompt": prompts, "num_images_per_prompt": 1}
            kwargs.update(self._common(spec, pipe, width, height, steps, guidance_scale, seeds))
            if should_stop is not None:
                kwargs["callback_on_step_end"] = _stop_callback(should_stop)
            if spec.supports_negative_prompt and all(negatives):
                kwargs["negative_prompt"] = negatives
            images, elapsed = self._call(spec, pipe, kwargs)
        split, at = [], 0
        for _, _, each in requests:
            split.append(images[at : at + len(each)])
            at += len(each)
        return split, elapsed

    def _common(self, spec, pipe, width, height, steps, guidance_scale, seeds) -> dict:
        import torch

        kwargs = {
            "num_inference_steps": steps,
            "guidance_scale": guidance_scale,
            # One generator per image: an image depends on its own seed alone.
            "generator": [torch.Generator("cpu").manual_seed(s % SEED_MODULUS) for s in seeds],
            "output_type": "pil",
        }
        if _takes(pipe, "width"):
            kwargs.update(height=height, width=width)
        if spec.max_sequence_length:
            kwargs["max_sequence_length"] = spec.max_sequence_length
        return kwargs

    def _call(self, spec: ModelSpec, pipe, kwargs: dict) -> tuple[list, float]:
        """One pipeline call (the caller holds the device lock)."""
        import torch

        started = time.perf_counter()
        try:
            with torch.inference_mode():
                output = pipe(**kwargs)
        except torch.OutOfMemoryError as exc:
            self.cache.release_memory()
            raise OutOfMemory(str(exc)) from exc
        elapsed = time.perf_counter() - started
        metrics.BATCH_SIZE.labels(spec.id).observe(len(kwargs["generator"]))
        return list(output.images), elapsed


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


def _takes(pipe, name: str) -> bool:
    import inspect

    return name in inspect.signature(pipe.__call__).parameters


def encode_image(image, output_format: str, compression: int | None) -> tuple[bytes, str]:
    """Encode a PIL image; `compression` (0-100) is the quality for jpeg and webp."""
    buffer = io.BytesIO()
    if output_format == "jpeg":
        image.convert("RGB").save(
            buffer, format="JPEG", quality=compression if compression is not None else 95
        )
        return buffer.getvalue(), "image/jpeg"
    if output_format == "webp":
        image.save(buffer, format="WEBP", quality=compression if compression is not None else 90)
        return buffer.getvalue(), "image/webp"
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


_engine: Engine | None = None
_engine_lock = threading.Lock()


def warm_up(model_ids: list[str]) -> None:
    """Import the heavy libraries and load the listed models before the first job."""
    from generations.catalog import get_model

    engine = get_engine()
    for model_id in model_ids:
        spec = get_model(model_id)
        if spec is None:
            logger.warning("warm-up: model %s is not in the catalog", model_id)
            continue
        try:
            engine.pipeline(spec)
        except ModelLoadError as exc:
            logger.warning("warm-up: %s", exc)


def get_engine() -> Engine:
    """The process-wide engine: pipelines load once per worker process and are reused."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine()
    return _engine
