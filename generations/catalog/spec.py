"""A model of the catalog: what it is, what a client may ask of it, and how the worker
loads it (ModelSpec), with the checks a catalog entry must pass when the catalog loads
(without importing torch or diffusers: the web process reads the catalog too)."""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from generations.catalog import configs, families
from generations.catalog.families import Family

# The families the catalog's `architecture` field names (generations/catalog/families.py);
# "" takes the family from the model's model_index.json.
ARCHITECTURES = families.BY_NAME
QUALITIES = ("auto", "low", "medium", "high", "standard", "hd")
PNG_COMPRESSIONS = ("fast", "small")


@functools.cache
def diffusers_schedulers() -> frozenset[str]:
    """The scheduler classes the installed diffusers defines, read from its source files
    without importing it: the web process reads the catalog and never loads diffusers
    (tests/test_web_process.py). Empty if diffusers is not installed here."""
    found = importlib.util.find_spec("diffusers")
    if found is None or not found.submodule_search_locations:
        return frozenset()
    folder = Path(next(iter(found.submodule_search_locations))) / "schedulers"
    pattern = re.compile(r"^class (\w+Scheduler)\b", re.MULTILINE)
    return frozenset(
        name for path in folder.rglob("*.py") for name in pattern.findall(path.read_text())
    )


@dataclass(frozen=True)
class ModelSpec:
    id: str
    source: str  # hub id or local folder
    # A family of generations/catalog/families.py ("sd", "flux", "qwen-image", ...); ""
    # takes it from the pipeline class of the model's model_index.json.
    architecture: str = ""
    # The diffusers pipeline class ("" = the architecture's, or model_index.json's).
    pipeline: str = ""
    # What it can do (families.CAPABILITIES); () = its family's, as its pipeline allows.
    capabilities: tuple[str, ...] = ()
    # Reference images of one instruction edit (0 = its family's).
    max_input_images: int = 0
    # Weights dtype on CUDA ("float16", "bfloat16", "float32"; "" = its family's).
    dtype: str = ""
    # The transformer's patch size, from its config (families that do not pack latents
    # themselves use it for the token geometry).
    config_patch_size: int = 0
    description: str = ""
    owned_by: str = "imagehub"
    created: int = 1_735_689_600  # 2025-01-01, a stable value for /v1/models
    aliases: tuple[str, ...] = ()
    demo: bool = False
    default_size: tuple[int, int] = (512, 512)
    min_size: int = 64
    max_size: int = 1024
    size_multiple: int = 8
    # When set, only these WxH sizes are allowed.
    allowed_sizes: tuple[str, ...] = ()
    max_pixels: int = 1024 * 1024
    max_n: int = 4
    max_prompt_chars: int = 4000
    default_steps: int = 4
    max_steps: int = 50
    # quality -> steps; "auto" uses default_steps, standard/hd follow medium/high.
    quality_steps: dict[str, int] = field(default_factory=dict)
    default_guidance: float = 0.0
    supports_negative_prompt: bool = True
    max_sequence_length: int | None = None
    vae_scale_factor: int = 8
    # Default prices in micro-credits (generations/pricing.py has the formula); staff
    # override them per model in the admin.
    price_per_image: int = 0
    price_per_megapixel_step: int = 0
    # Dynamic batching (generations/engine/batcher.py): the most images one pipeline call may
    # carry, and the size (width x height) above which each request runs alone.
    max_batch_images: int = 8
    max_batch_pixels: int = 512 * 512
    # CUDA only: keep the weights in RAM and move each module to the GPU while it runs.
    cpu_offload: bool = False
    # A diffusers scheduler class to use instead of the model's own (e.g.
    # "DPMSolverMultistepScheduler"), built from the model's scheduler config.
    scheduler: str = ""
    # The broker queue of this model's jobs ("" = IMAGEHUB_QUEUE): hosts that serve only
    # some models run `runworker --queues <their queues>`.
    queue: str = ""
    # Benchmarks only: the pipeline call is replaced by a wait of this many seconds per
    # call that holds no GIL, like a GPU kernel, and returns real images of the asked size
    # (make bench-pipeline measures the service against this emulated device's capacity).
    emulate_device_seconds: float = 0.0
    # How the worker writes PNG: "fast" (imagehub's writer: Sub filter, zlib level 1
    # run-length, bands deflated on several cores; a fifth of PIL's time at 1024², same
    # size on a diffusion model's grainy output) or "small" (PIL's default: smaller files
    # of flat, synthetic pictures).
    png_compression: str = "fast"

    # --- Accelerations (issue 19), applied when a worker loads the model
    # (generations/engine/accelerate.py; README, "Accelerations"). Each is off by default:
    # they cost start-up and gain only on some devices. Checked at catalog load without
    # torch or diffusers (the web process reads the catalog too). ---
    # torch.compile of the denoiser: "" (off) or a mode: "default", "reduce-overhead",
    # "max-autotune", "max-autotune-no-cudagraphs". Static shapes, compiled at load for
    # each batch bucket and size; a batch pads up to the next bucket, and a shape outside
    # them runs the eager denoiser: no recompiling mid-traffic.
    compile: str = ""
    compile_fullgraph: bool = True
    # Image counts compiled (() = powers of two up to max(max_batch_images, max_n)).
    compile_batch_sizes: tuple[int, ...] = ()
    # "WxH" sizes compiled (() = default_size).
    compile_sizes: tuple[str, ...] = ()
    # diffusers fuse_qkv_projections() on the denoiser and VAE.
    fuse_qkv: bool = False
    # channels_last memory format for the convolutional modules (UNet, VAE).
    channels_last: bool = False
    # The denoiser's weights through torchao: "" (as loaded), "int8" (weight-only) or
    # "fp8" (float8 weights and activations; CUDA compute capability 8.9 or more).
    quantize: str = ""
    # A diffusers attention backend for the denoiser ("" = the library's default, torch
    # SDPA): "native", "_native_flash", "_native_cudnn", "flash", "sage", ...
    attention_backend: str = ""

    def __post_init__(self):
        if self.scheduler:
            known = diffusers_schedulers()
            if not self.scheduler.endswith("Scheduler") or (known and self.scheduler not in known):
                raise ImproperlyConfigured(
                    f"model {self.id!r}: unknown diffusers scheduler {self.scheduler!r}"
                )
        if self.png_compression not in PNG_COMPRESSIONS:
            raise ImproperlyConfigured(
                f"model {self.id!r}: png_compression must be one of {sorted(PNG_COMPRESSIONS)}"
            )
        if self.architecture and self.architecture not in ARCHITECTURES:
            raise ImproperlyConfigured(
                f"model {self.id!r}: architecture must be one of {sorted(ARCHITECTURES)}, "
                "or left out to read it from the model's model_index.json"
            )
        if self.architecture and not self.pipeline:
            object.__setattr__(self, "pipeline", ARCHITECTURES[self.architecture].pipeline)
        unknown = set(self.capabilities) - set(families.CAPABILITIES)
        if unknown:
            raise ImproperlyConfigured(
                f"model {self.id!r}: unknown capabilities {sorted(unknown)}; choose from "
                f"{list(families.CAPABILITIES)}"
            )
        if self.dtype not in ("", "float16", "bfloat16", "float32"):
            raise ImproperlyConfigured(f"model {self.id!r}: dtype {self.dtype!r}")
        _check_accelerations(self)

    @property
    def family(self) -> Family:
        # The pipeline class was read from the model's files when the catalog loaded
        # (_derived); read per request it would cost a few file reads each time.
        return families.family_of(self.pipeline)

    @property
    def call_parameters(self) -> dict[str, object]:
        """The arguments its pipeline's __call__ takes ({} when the class is unknown)."""
        return configs.call_parameters(self.family.pipeline) or {}

    @property
    def model_capabilities(self) -> tuple[str, ...]:
        if self.capabilities:
            return self.capabilities
        taken = self.call_parameters
        found = []
        for capability in self.family.capabilities:
            if taken and capability == families.EDIT_INSTRUCTION and "image" not in taken:
                continue
            if capability == families.PARTIAL_IMAGES and "callback_on_step_end" not in taken:
                continue
            found.append(capability)
        return tuple(found)

    def can(self, capability: str) -> bool:
        return capability in self.model_capabilities

    @property
    def input_images(self) -> int:
        """The images one edit uses: its reference images, or the one init image."""
        if self.max_input_images:
            return self.max_input_images
        if self.can(families.EDIT_INSTRUCTION):
            return self.family.max_input_images
        edits = (families.EDIT_IMAGE_TO_IMAGE, families.INPAINT, families.VARIATION)
        return 1 if any(self.can(c) for c in edits) else 0

    @property
    def latent_patch(self) -> int:
        return self.family.packing or self.config_patch_size or 1

    @property
    def latent_pixels(self) -> int:
        """Output pixels along one side per latent token (tokens = H/f × W/f)."""
        return self.vae_scale_factor * self.latent_patch

    def steps_for(self, quality: str) -> int:
        quality = {"standard": "medium", "hd": "high"}.get(quality, quality)
        return self.quality_steps.get(quality, self.default_steps)

    def output_tokens(self, width: int, height: int) -> int:
        """Image tokens of one output image: the latent grid the model denoises."""
        f = self.latent_pixels
        return (width // f) * (height // f)

    def reference_tokens(self, width: int, height: int) -> int:
        """Image tokens of one reference image of an instruction edit, at the size the
        pipeline resizes it to before encoding it."""
        f = self.latent_pixels
        fed_width, fed_height = families.fed_size(self.family, width, height, f)
        return (fed_width // f) * (fed_height // f)

    def as_openai(self) -> dict:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            # imagehub extensions: what a client may ask of this model.
            "description": self.description,
            "architecture": self.family.name,
            "capabilities": list(self.model_capabilities),
            "max_input_images": self.input_images,
            "demo": self.demo,
            "default_size": f"{self.default_size[0]}x{self.default_size[1]}",
            "min_size": self.min_size,
            "max_size": self.max_size,
            "size_multiple": self.size_multiple,
            "allowed_sizes": list(self.allowed_sizes),
            "max_n": self.max_n,
            "default_steps": self.default_steps,
            "max_steps": self.max_steps,
            "max_prompt_chars": self.max_prompt_chars,
        }


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
QUANTIZATIONS = ("int8", "fp8")
# diffusers' AttentionBackendName values that need no download from a kernel hub.
ATTENTION_BACKENDS = (
    "native",
    "_native_cudnn",
    "_native_efficient",
    "_native_flash",
    "_native_math",
    "flash",
    "flash_varlen",
    "_flash_3",
    "_flash_varlen_3",
    "flex",
    "sage",
    "sage_varlen",
    "xformers",
    "aiter",
)


def _check_accelerations(spec: ModelSpec) -> None:
    """The acceleration fields' values (whether this host can apply them is the worker's
    question, at load)."""

    def bad(message: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"model {spec.id!r}: {message}")

    choices = (
        ("compile", spec.compile, COMPILE_MODES),
        ("quantize", spec.quantize, QUANTIZATIONS),
        ("attention_backend", spec.attention_backend, ATTENTION_BACKENDS),
    )
    for name, value, allowed in choices:
        if value and value not in allowed:
            raise bad(f"{name} must be one of {list(allowed)} or empty, not {value!r}")
    if spec.compile and spec.cpu_offload:
        raise bad("compile and cpu_offload do not go together (offload moves weights per call)")
    sizes = spec.compile_batch_sizes
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in sizes):
        raise bad(f"compile_batch_sizes must be positive integers, not {list(sizes)}")
    for size in spec.compile_sizes:
        width, _, height = str(size).partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
            raise bad(f"compile_sizes entries are 'WxH', not {size!r}")
