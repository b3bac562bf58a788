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

from generations.catalog import ModelSpec
from imagehub import metrics

logger = logging.getLogger("generations.engine")

SEED_MODULUS = 2**63
_LANCZOS = Image.Resampling.LANCZOS
_BILINEAR = Image.Resampling.BILINEAR


class ModelLoadError(Exception):
    """The model cannot be loaded here (missing files, no network, bad id, out of memory)."""


class OutOfMemory(Exception):
    pass


class Canceled(Exception):
    """Raised between two denoising steps when the job was asked to stop."""


@dataclass
class RunResult:
    images: list  # PIL images, one per seed, in order
    inference_seconds: float


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
    """A per-process cache of loaded pipelines and the code that runs them.

    A diffusers pipeline is not thread-safe (its scheduler keeps per-call state), so each
    pipeline runs one call at a time under its own lock.
    """

    def __init__(self, device: str | None = None):
        import diffusers
        import transformers

        # Per-component loading bars would drown the job log lines; we log one line per load.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        self.device = resolve_device(device or settings.DEVICE)
        self._pipes: dict[str, object] = {}
        # (model id, "img2img" | "inpaint") -> a pipeline sharing the text-to-image one's
        # modules (diffusers' from_pipe): no weights are loaded twice.
        self._derived: dict[tuple[str, str], object] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._load_lock = threading.Lock()

    # --- loading ------------------------------------------------------------------------
    def pipeline(self, spec: ModelSpec):
        pipe = self._pipes.get(spec.id)
        if pipe is not None:
            return pipe
        with self._load_lock:
            pipe = self._pipes.get(spec.id)
            if pipe is None:
                pipe = self._load(spec)
                self._locks[spec.id] = threading.Lock()  # before the pipe becomes visible
                self._pipes[spec.id] = pipe
                metrics.LOADED_MODELS.set(len(self._pipes))
        return pipe

    def derived(self, spec: ModelSpec, task: str):
        """The image-to-image or inpainting pipeline built on the loaded model."""
        key = (spec.id, task)
        pipe = self._derived.get(key)
        if pipe is not None:
            return pipe
        base = self.pipeline(spec)
        with self._load_lock:
            pipe = self._derived.get(key)
            if pipe is None:
                from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

                auto = (
                    AutoPipelineForInpainting if task == "inpaint" else AutoPipelineForImage2Image
                )
                try:
                    pipe = auto.from_pipe(base)
                except (ValueError, KeyError) as exc:
                    raise ModelLoadError(f"Model '{spec.id}' cannot do {task}: {exc}") from exc
                pipe.set_progress_bar_config(disable=True)
                self._derived[key] = pipe
        return pipe

    def loaded_models(self) -> list[str]:
        return list(self._pipes)

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
        pipe = self.pipeline(spec)
        name = {"flux": "tokenizer_2", "sd3": "tokenizer_3"}.get(spec.architecture, "tokenizer")
        tokenizer = getattr(pipe, name, None) or getattr(pipe, "tokenizer", None)
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
        import torch

        from generations import previews

        pipe = self.pipeline(spec)
        kwargs = {"prompt": prompt}
        if init_image is not None:
            init_image = init_image.convert("RGB").resize((width, height), _LANCZOS)
            kwargs.update(image=init_image, strength=strength)
            if mask is not None:
                mask = mask.convert("L").resize((width, height), _BILINEAR)
                kwargs["mask_image"] = mask
            pipe = self.derived(spec, "inpaint" if mask is not None else "img2img")
        if _takes(pipe, "width"):
            kwargs.update(height=height, width=width)
        kwargs.update({
            "num_inference_steps": steps,
            "guidance_scale": guidance_scale,
            "num_images_per_prompt": len(seeds),
            # One generator per image: an image depends on its own seed alone.
            "generator": [torch.Generator("cpu").manual_seed(s % SEED_MODULUS) for s in seeds],
            "output_type": "pil",
        })  # fmt: skip
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
        if spec.max_sequence_length:
            kwargs["max_sequence_length"] = spec.max_sequence_length
        with self._locks[spec.id]:
            started = time.perf_counter()
            try:
                with torch.inference_mode():
                    output = pipe(**kwargs)
            except torch.OutOfMemoryError as exc:
                raise OutOfMemory(str(exc)) from exc
            elapsed = time.perf_counter() - started
        images = list(output.images)
        if mask is not None:
            # The pipelines blend in latent space and re-decode every pixel; users expect
            # the pixels they did not mask to come back exactly as they sent them.
            images = [Image.composite(im.convert("RGB"), init_image, mask) for im in images]
        return RunResult(images=images, inference_seconds=elapsed)


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
