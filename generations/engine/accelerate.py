"""Per-model accelerations from the catalog (compile, fuse_qkv, channels_last, quantize,
attention_backend), applied to a pipeline once it is on its device (Engine._load).

Each one is off unless the model's catalog entry asks for it. One that this host cannot
apply (no torchao, fp8 on a GPU older than compute capability 8.9, an attention backend
whose kernels are not installed) is skipped with a warning, and the model serves without
it: the load log line lists what was applied and what was skipped, and why.

torch.compile and shapes. The denoiser is compiled with static shapes (`dynamic=False`:
the fastest kernels, and CUDA graphs possible with "reduce-overhead") for a fixed set of
shape buckets, at load: every batch bucket (the catalog's `compile_batch_sizes`, or powers
of two up to the most images one call can carry) at every compiled size
(`compile_sizes`, or the default size), one denoising step each. Then the compiled set is
sealed: a call whose batch is not a bucket is padded up to the next compiled batch of the
same shapes (the padding repeats the last image's inputs; its outputs are dropped, so each
image stays the image it would be alone, up to float rounding), and a call no bucket fits
(another size, a batch over the largest bucket) runs the eager denoiser, logged once per
shape. So a new batch size or size never recompiles mid-traffic (a FLUX recompile costs
minutes on an H100). Padding was chosen over dynamic batch dimensions because it keeps
the static kernels and CUDA graphs; it costs at most the gap to the next bucket (a batch
of 3 runs as 4).
"""

from __future__ import annotations

import logging
import time
import weakref

from generations.catalog import ModelSpec

__all__ = ["apply", "applied", "compile_shapes", "fp8_unsupported_reason"]

logger = logging.getLogger(__name__)

# torch.compile's backend; the tests use a counting backend instead (no C++ compiler runs).
COMPILE_BACKEND = "inductor"
# Keyword arguments the denoisers take that have no batch dimension.
_NOT_BATCHED = frozenset({"txt_ids", "img_ids"})
_DENOISERS = ("transformer", "unet")
# What apply() did to each pipeline (for the load log line and /metrics-free inspection).
_APPLIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def applied(pipe) -> list[str]:
    """What apply() did to `pipe`: applied accelerations, and skipped ones with the reason."""
    return list(_APPLIED.get(pipe, ()))


def denoiser_of(pipe):
    for name in _DENOISERS:
        module = getattr(pipe, name, None)
        if module is not None:
            return module
    return None


def apply(spec: ModelSpec, pipe, device: str) -> list[str]:
    """Apply the model's accelerations to `pipe` (on `device`), in the order that works:
    fusion before quantization (it concatenates the weights), compile last (it traces what
    the others made). Returns what was done, as apply() reports it."""
    notes: list[str] = []
    denoiser = denoiser_of(pipe)
    steps = (
        ("fuse_qkv", spec.fuse_qkv, lambda: _fuse_qkv(pipe)),
        ("attention_backend", spec.attention_backend, lambda: _attention(spec, denoiser)),
        ("quantize", spec.quantize, lambda: _quantize(spec, denoiser, device)),
        ("channels_last", spec.channels_last, lambda: _channels_last(pipe)),
        ("compile", spec.compile, lambda: _compile(spec, pipe, denoiser)),
    )
    for name, wanted, step in steps:
        if not wanted:
            continue
        if denoiser is None and name != "channels_last":
            notes.append(f"{name} skipped: the pipeline has no transformer or unet")
            continue
        skipped = step()
        label = name if wanted is True else f"{name}={wanted}"
        if skipped:
            logger.warning("model %s: %s skipped: %s", spec.id, label, skipped)
            notes.append(f"{label} skipped: {skipped}")
        else:
            notes.append(label)
    _APPLIED[pipe] = notes
    return notes


# --- the simple ones ------------------------------------------------------------------------
def _fuse_qkv(pipe) -> str | None:
    fused = []
    for name in (*_DENOISERS, "vae"):
        module = getattr(pipe, name, None)
        fuse = getattr(module, "fuse_qkv_projections", None)
        if fuse is None:
            continue
        try:
            fuse()
        except ValueError as exc:  # e.g. attention with added KV projections
            logger.info("fuse_qkv: %s left unfused: %s", name, exc)
            continue
        fused.append(name)
    return None if fused else "no module of this pipeline can fuse its projections"


def _attention(spec: ModelSpec, denoiser) -> str | None:
    setter = getattr(denoiser, "set_attention_backend", None)
    if setter is None:
        return "the installed diffusers has no set_attention_backend"
    try:
        setter(spec.attention_backend)
    except (ValueError, RuntimeError, ImportError) as exc:
        return str(exc).splitlines()[0]
    return None


def _channels_last(pipe) -> str | None:
    import torch

    moved = False
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            try:
                module.to(memory_format=torch.channels_last)
            except RuntimeError as exc:  # 3D convolutions (Qwen-Image's video VAE)
                logger.info("channels_last: %s left as it is: %s", name, exc)
                continue
            moved = True
    return None if moved else "no 2D convolutional module (unet, vae) in this pipeline"


# --- quantization ---------------------------------------------------------------------------
def fp8_unsupported_reason(device: str) -> str | None:
    """Why fp8 cannot run on `device`, or None when it can (CUDA, capability >= 8.9)."""
    if not device.startswith("cuda"):
        return f"fp8 needs a CUDA GPU of compute capability 8.9 or more (device: {device})"
    import torch

    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if (major, minor) < (8, 9):
        return f"fp8 needs compute capability 8.9 or more (this GPU: {major}.{minor})"
    return None


def _quantize(spec: ModelSpec, denoiser, device: str) -> str | None:
    try:
        from torchao import quantization
    except ImportError:
        return "torchao is not installed (pip install 'imagehub[gpu]')"
    if spec.quantize == "fp8":
        reason = fp8_unsupported_reason(device)
        if reason:
            return reason
        names = (
            "Float8DynamicActivationFloat8WeightConfig",
            "float8_dynamic_activation_float8_weight",
        )
    else:
        names = ("Int8WeightOnlyConfig", "int8_weight_only")
    # torchao's config classes (0.10+), or the older factory functions.
    make = next((getattr(quantization, n) for n in names if hasattr(quantization, n)), None)
    if make is None:
        return f"this torchao has none of {', '.join(names)}"
    quantization.quantize_(denoiser, make())
    return None


# --- torch.compile with shape buckets -----------------------------------------------------------
def compile_shapes(spec: ModelSpec) -> list[tuple[int, int, int]]:
    """(images, width, height) of each compiled bucket, as the model's load compiles them."""
    sizes = [tuple(int(v) for v in s.split("x")) for s in spec.compile_sizes] or [spec.default_size]
    shapes = []
    for width, height in sizes:
        if spec.compile_batch_sizes:
            batches = sorted(set(spec.compile_batch_sizes))
        else:
            batched = spec.max_batch_images > 1 and width * height <= spec.max_batch_pixels
            most = max(spec.max_n, spec.max_batch_images) if batched else spec.max_n
            batches = [1]
            while batches[-1] < most:
                batches.append(batches[-1] * 2)
        shapes += [(batch, width, height) for batch in batches]
    return shapes


def _compile(spec: ModelSpec, pipe, denoiser) -> str | None:
    import torch

    shapes = compile_shapes(spec)
    # Each bucket is one more graph of the same code; dynamo's default limit is 8.
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 4 * len(shapes) + 8))
    compiled = torch.compile(
        denoiser.forward,
        mode=None if COMPILE_BACKEND != "inductor" else spec.compile,
        fullgraph=spec.compile_fullgraph,
        dynamic=False,
        backend=COMPILE_BACKEND,
    )
    router = ShapeRouter(spec.id, denoiser.forward, compiled)
    denoiser.forward = router
    started = time.perf_counter()
    try:
        for images, width, height in shapes:
            _warm_call(spec, pipe, images, width, height)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        # Not traceable as asked (fullgraph), or out of memory at a large bucket: the
        # model serves eager rather than not at all.
        del denoiser.forward
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    router.seal()
    logger.info(
        "model %s: compiled %d shapes (%s) in %.1fs",
        spec.id,
        len(shapes),
        ", ".join(f"{b}x{w}x{h}" for b, w, h in shapes),
        time.perf_counter() - started,
    )
    return None


def _warm_call(spec: ModelSpec, pipe, images: int, width: int, height: int) -> None:
    """One denoising step at this shape, called as the engine calls the pipeline (under
    inference_mode, the same sequence length), so the compiled guards match its calls."""
    import torch

    kwargs = {
        "prompt": ["warm-up"] * images,
        "num_inference_steps": 1,
        "guidance_scale": spec.default_guidance,
        "generator": [torch.Generator("cpu").manual_seed(i) for i in range(images)],
        "width": width,
        "height": height,
        "output_type": "latent",
    }
    if spec.max_sequence_length:
        kwargs["max_sequence_length"] = spec.max_sequence_length
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        pipe(**kwargs)


class ShapeRouter:
    """The denoiser's forward once compiled: shapes compiled before seal() run compiled
    (a smaller batch padded up to a compiled one); others run eager, never recompiling."""

    def __init__(self, model_id: str, eager, compiled):
        self.model_id = model_id
        self.eager = eager
        self.compiled = compiled
        self.batches: dict[tuple, list[int]] = {}  # other shapes -> compiled batch sizes
        self.sealed = False
        self.eager_shapes: set[tuple] = set()
        self.calls = {"compiled": 0, "padded": 0, "eager": 0}

    def seal(self) -> None:
        self.sealed = True

    def __call__(self, *args, **kwargs):
        batch = _batch_of(args, kwargs)
        if batch is None:
            self.calls["eager"] += 1
            return self.eager(*args, **kwargs)
        key = _shapes_key(args, kwargs, batch)
        if not self.sealed:
            known = self.batches.setdefault(key, [])
            if batch not in known:
                known.append(batch)
                known.sort()
            self.calls["compiled"] += 1
            return self.compiled(*args, **kwargs)
        target = next((b for b in self.batches.get(key, ()) if b >= batch), None)
        if target is None:
            if (batch, key) not in self.eager_shapes:
                self.eager_shapes.add((batch, key))
                logger.info(
                    "model %s: batch %d of a shape not compiled at load runs eager",
                    self.model_id,
                    batch,
                )
            self.calls["eager"] += 1
            return self.eager(*args, **kwargs)
        if target == batch:
            self.calls["compiled"] += 1
            return self.compiled(*args, **kwargs)
        self.calls["padded"] += 1
        args = tuple(_pad(value, batch, target) for value in args)
        kwargs = {
            name: value if name in _NOT_BATCHED else _pad(value, batch, target)
            for name, value in kwargs.items()
        }
        return _first_rows(self.compiled(*args, **kwargs), batch)


def _is_tensor(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _batch_of(args, kwargs) -> int | None:
    first = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
    if _is_tensor(first) and first.dim() >= 1:
        return int(first.shape[0])
    return None


def _shapes_key(args, kwargs, batch: int) -> tuple:
    """What a compiled graph is specialised on, with the batch dimension left out."""

    def key(value, name=""):
        if _is_tensor(value):
            shape = tuple(value.shape)
            if shape and shape[0] == batch and name not in _NOT_BATCHED:
                shape = ("B", *shape[1:])
            return ("tensor", shape, str(value.dtype), str(value.device))
        if isinstance(value, dict):
            return ("dict", tuple(sorted((k, key(v, k)) for k, v in value.items())))
        if isinstance(value, (list, tuple)):
            return ("seq", tuple(key(v) for v in value))
        if value is None or isinstance(value, (bool, int, float, str)):
            return ("value", value)
        return ("object", type(value).__name__)

    return (
        tuple(key(value) for value in args),
        tuple(sorted((name, key(value, name)) for name, value in kwargs.items())),
    )


def _pad(value, batch: int, target: int):
    """`value` with its batch dimension grown to `target` by repeating its last row."""
    if _is_tensor(value):
        if value.dim() >= 1 and value.shape[0] == batch:
            import torch

            extra = value[-1:].expand(target - batch, *value.shape[1:])
            return torch.cat([value, extra])
        return value
    if isinstance(value, dict):
        return {k: v if k in _NOT_BATCHED else _pad(v, batch, target) for k, v in value.items()}
    return value


def _first_rows(output, batch: int):
    if isinstance(output, tuple):
        return (output[0][:batch], *output[1:])
    if hasattr(output, "sample"):
        return type(output)(sample=output.sample[:batch])
    return output[:batch]
