"""The model catalog: which models this deployment serves, with their defaults and limits.

Built in: the two local demo models (random weights, built by `build_demo_models`) and
real models by hub id. IMAGEHUB_MODEL_CATALOG names a JSON file whose entries replace
fields of built-in entries with the same id, add new ones, or drop one with
``"enabled": false``::

    [{"id": "flux.1-schnell", "max_n": 2},
     {"id": "my-sdxl", "source": "/models/my-sdxl", "architecture": "sdxl"}]
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from django.conf import settings
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
    # How the worker writes PNG: "fast" (zlib level 1, run-length strategy: about a third
    # less encoder time than PIL's default, same size on a diffusion model's grainy output)
    # or "small" (PIL's default: smaller files of flat, synthetic pictures).
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
        pipeline = self.pipeline or configs.derived_fields(self.source).get("pipeline", "")
        return families.family_of(pipeline)

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


def _builtin() -> list[ModelSpec]:
    demo = Path(settings.DEMO_MODELS_DIR)
    return [
        ModelSpec(
            id="demo-sd",
            source=str(demo / "demo-sd"),
            architecture="sd",
            description="Random-weight Stable Diffusion-style pipeline; draws noise.",
            demo=True,
            default_size=(256, 256),
            max_size=1024,
            max_n=10,
            default_steps=4,
            max_steps=50,
            quality_steps={"low": 2, "medium": 4, "high": 8},
            default_guidance=5.0,
            price_per_image=100,
            price_per_megapixel_step=1000,
        ),
        ModelSpec(
            id="demo-flux",
            source=str(demo / "demo-flux"),
            architecture="flux",
            description="Random-weight FLUX-style pipeline; draws noise.",
            demo=True,
            default_size=(256, 256),
            size_multiple=16,
            max_size=1024,
            max_n=10,
            default_steps=4,
            max_steps=50,
            quality_steps={"low": 2, "medium": 4, "high": 8},
            default_guidance=0.0,
            supports_negative_prompt=False,
            max_sequence_length=128,
            price_per_image=100,
            price_per_megapixel_step=1000,
        ),
        ModelSpec(
            id="flux.1-schnell",
            source="black-forest-labs/FLUX.1-schnell",
            architecture="flux",
            owned_by="black-forest-labs",
            aliases=("black-forest-labs/FLUX.1-schnell",),
            description="FLUX.1 [schnell], 12B rectified-flow transformer, 1-4 steps.",
            default_size=(1024, 1024),
            min_size=256,
            max_size=2048,
            size_multiple=16,
            max_pixels=2048 * 2048,
            max_n=4,
            default_steps=4,
            max_steps=8,
            quality_steps={"low": 2, "medium": 4, "high": 4},
            default_guidance=0.0,
            supports_negative_prompt=False,
            max_sequence_length=256,
            price_per_image=500,
            price_per_megapixel_step=600,
        ),
        ModelSpec(
            id="sdxl-turbo",
            source="stabilityai/sdxl-turbo",
            architecture="sdxl",
            owned_by="stabilityai",
            aliases=("stabilityai/sdxl-turbo",),
            description="SDXL-Turbo, adversarially distilled SDXL, 1-4 steps at 512x512.",
            default_size=(512, 512),
            min_size=256,
            max_size=1024,
            max_n=8,
            default_steps=1,
            max_steps=8,
            quality_steps={"low": 1, "medium": 2, "high": 4},
            default_guidance=0.0,
            price_per_image=300,
            price_per_megapixel_step=1500,
        ),
        ModelSpec(
            id="sdxl",
            source="stabilityai/stable-diffusion-xl-base-1.0",
            architecture="sdxl",
            owned_by="stabilityai",
            aliases=("stabilityai/stable-diffusion-xl-base-1.0",),
            description="Stable Diffusion XL base 1.0.",
            default_size=(1024, 1024),
            min_size=512,
            max_size=1536,
            max_pixels=1536 * 1536,
            max_n=4,
            default_steps=30,
            max_steps=100,
            quality_steps={"low": 20, "medium": 30, "high": 50},
            default_guidance=5.0,
            price_per_image=500,
            price_per_megapixel_step=100,
        ),
        ModelSpec(
            id="sd-1.5",
            source="stable-diffusion-v1-5/stable-diffusion-v1-5",
            architecture="sd",
            owned_by="stable-diffusion-v1-5",
            aliases=(
                "stable-diffusion-v1-5/stable-diffusion-v1-5",
                "runwayml/stable-diffusion-v1-5",
            ),
            description="Stable Diffusion 1.5.",
            default_size=(512, 512),
            min_size=256,
            max_size=1024,
            max_n=8,
            default_steps=25,
            max_steps=100,
            quality_steps={"low": 15, "medium": 25, "high": 40},
            default_guidance=7.5,
            price_per_image=300,
            price_per_megapixel_step=300,
        ),
    ]


_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}
_TUPLE_FIELDS = {"aliases", "allowed_sizes", "default_size", "compile_batch_sizes", "compile_sizes"}


def _apply_overrides(specs: dict[str, ModelSpec], path: str) -> None:
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"IMAGEHUB_MODEL_CATALOG={path!r}: {exc}") from exc
    if not isinstance(entries, list):
        raise ImproperlyConfigured("IMAGEHUB_MODEL_CATALOG must hold a JSON list of models")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ImproperlyConfigured(f"catalog entry without an id: {entry!r}")
        entry = dict(entry)
        model_id = entry.pop("id")
        if entry.pop("enabled", True) is False:
            specs.pop(model_id, None)
            continue
        unknown = set(entry) - _FIELDS
        if unknown:
            raise ImproperlyConfigured(
                f"catalog entry {model_id!r}: unknown fields {sorted(unknown)}"
            )
        for name in _TUPLE_FIELDS & set(entry):
            entry[name] = tuple(entry[name])
        try:
            if model_id in specs:
                specs[model_id] = dataclasses.replace(specs[model_id], **entry)
            else:
                specs[model_id] = ModelSpec(id=model_id, **{**_derived(entry), **entry})
        except TypeError as exc:
            raise ImproperlyConfigured(f"catalog entry {model_id!r}: {exc}") from exc


def _derived(entry: dict) -> dict:
    """A new model's fields from its own files and its pipeline's signature, for every
    field its catalog entry leaves out."""
    source = entry.get("source")
    if not isinstance(source, str):
        return {}
    fields = configs.derived_fields(source)
    pipeline = entry.get("pipeline") or fields.get("pipeline")
    if not pipeline and entry.get("architecture") in ARCHITECTURES:
        pipeline = ARCHITECTURES[entry["architecture"]].pipeline
    family = families.family_of(pipeline or "")
    taken = configs.call_parameters(family.pipeline) or {}
    if taken:
        negative = family.negative_prompt
        fields["supports_negative_prompt"] = (
            "negative_prompt" in taken if negative is None else negative
        )
        steps = taken.get("num_inference_steps")
        if isinstance(steps, int) and steps > 0:
            fields["default_steps"] = steps
            fields["max_steps"] = max(50, steps)
        guidance = taken.get(family.guidance)
        fields["default_guidance"] = float(guidance) if isinstance(guidance, int | float) else 0.0
    side = fields.get("default_size", (1024, 1024))[0]
    fields.setdefault("default_size", (side, side))
    fields.update(max_size=2 * side, max_pixels=(2 * side) ** 2, min_size=64)
    patch = family.packing or fields.get("config_patch_size") or 1
    fields["size_multiple"] = fields.get("vae_scale_factor", 8) * patch
    return fields


@lru_cache(maxsize=1)
def catalog() -> dict[str, ModelSpec]:
    specs = {spec.id: spec for spec in _builtin()}
    if settings.MODEL_CATALOG_FILE:
        _apply_overrides(specs, settings.MODEL_CATALOG_FILE)
    if settings.DEFAULT_MODEL not in specs:
        raise ImproperlyConfigured(
            f"IMAGEHUB_DEFAULT_MODEL={settings.DEFAULT_MODEL!r} is not in the catalog"
        )
    return specs


def get_model(model_id: str | None) -> ModelSpec | None:
    """The spec for an id or alias; the default model when none is named."""
    specs = catalog()
    if not model_id:
        return specs[settings.DEFAULT_MODEL]
    if model_id in specs:
        return specs[model_id]
    for spec in specs.values():
        if model_id in spec.aliases:
            return spec
    return None


def all_models() -> list[ModelSpec]:
    return list(catalog().values())


def queues() -> list[str]:
    """Every broker queue the catalog's models use, the default first."""
    names = [settings.DRAMATIQ_QUEUE]
    for spec in catalog().values():
        if spec.queue and spec.queue not in names:
            names.append(spec.queue)
    return names


def queue_of(model_id: str) -> str:
    """The broker queue of a model's jobs."""
    spec = get_model(model_id)
    return spec.queue if spec is not None and spec.queue else settings.DRAMATIQ_QUEUE


def models_on_queue(queue: str) -> list[str]:
    """The ids of the models whose jobs go to `queue` (the workers on it run them all)."""
    return [spec.id for spec in catalog().values() if queue_of(spec.id) == queue]
