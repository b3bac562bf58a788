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
import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from generations.catalog import configs, families
from generations.catalog.spec import (  # noqa: F401  (the package's names)
    ARCHITECTURES,
    PNG_COMPRESSIONS,
    QUALITIES,
    ModelSpec,
    diffusers_schedulers,
)


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


def capability_labels() -> dict[str, list[str]]:
    """{model id: what it does, in words} (the pages show it beside each model)."""
    return {
        spec.id: [families.CAPABILITY_LABELS[c] for c in spec.model_capabilities]
        for spec in catalog().values()
    }


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
