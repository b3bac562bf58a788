"""How the engine calls each family's pipeline: the dtype it loads in, the tokenizer that
counts its text tokens, the keyword arguments of a call (only those its `__call__` takes),
and the reference images of an instruction edit. What a family is comes from the catalog
(generations/catalog/families.py); this module only turns it into torch and diffusers.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

from generations.catalog import ModelSpec

SEED_MODULUS = 2**63
_DTYPES = ("float16", "bfloat16", "float32")


def dtype_for(spec: ModelSpec, device: str):
    """The family's dtype on CUDA (bf16 where it is trained in it), float32 elsewhere.
    A GPU without bf16 (before Ampere) gets float16 for a family's bf16 default; a
    catalog entry's own `dtype` is taken as written."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    name = spec.dtype or spec.family.dtype
    dtype = getattr(torch, name if name in _DTYPES else "float16")
    if dtype is torch.bfloat16 and not spec.dtype and not _bf16_supported(device):
        return torch.float16
    return dtype


def _bf16_supported(device: str) -> bool:
    import torch

    with torch.cuda.device(torch.device(device)):
        return torch.cuda.is_bf16_supported()


def tokenizer_of(spec: ModelSpec, pipe):
    """The tokenizer of the main text encoder (a processor's own tokenizer for families
    that encode text with a vision-language model's processor)."""
    found = getattr(pipe, spec.family.tokenizer, None) or getattr(pipe, "tokenizer", None)
    return getattr(found, "tokenizer", None) or found


@lru_cache(maxsize=128)
def _parameters(pipeline_class) -> frozenset[str]:
    return frozenset(inspect.signature(pipeline_class.__call__).parameters)


def takes(pipe, name: str) -> bool:
    return name in _parameters(type(pipe))


def call_kwargs(pipe, request, seeds: list[int]) -> dict:
    """The arguments every call of a request shares, as the pipeline names them."""
    import torch

    spec = request.spec
    kwargs = {
        "num_inference_steps": request.steps,
        # One generator per image: an image depends on its own seed alone.
        "generator": [torch.Generator("cpu").manual_seed(s % SEED_MODULUS) for s in seeds],
        "output_type": "pil",
    }
    guidance = spec.family.guidance
    if guidance and takes(pipe, guidance):
        kwargs[guidance] = request.guidance_scale
    if takes(pipe, "width"):
        kwargs.update(height=request.height, width=request.width)
    if takes(pipe, "max_area"):  # Kontext scales its output to max_area otherwise
        kwargs["max_area"] = request.width * request.height
    if spec.max_sequence_length and takes(pipe, "max_sequence_length"):
        kwargs["max_sequence_length"] = spec.max_sequence_length
    return kwargs


def reference_kwargs(spec: ModelSpec, references: list) -> dict:
    """The reference images of an instruction edit: a list where the family takes
    several, the one image otherwise."""
    images = [image.convert("RGB") for image in references]
    return {"image": images if spec.family.takes_several_images() else images[0]}


def derived_pipeline_class(spec: ModelSpec, task: str):
    """The family's own image-to-image or inpainting class, where diffusers' AutoPipeline
    does not map it (None: AutoPipeline's)."""
    name = spec.family.inpaint_pipeline if task == "inpaint" else spec.family.img2img_pipeline
    if not name:
        return None
    import diffusers

    return getattr(diffusers, name)


def repair_derived(pipe) -> None:
    """Upstream bugs of derived pipelines, worked around on the built one.

    ChromaInpaintPipeline (diffusers 0.42) reads `transformer.config.guidance_embeds`, a
    FLUX.1 field Chroma's transformer config does not have (Chroma has no guidance
    embedding: the pipeline would pass none), and fails with AttributeError. The field
    is declared False, which is what the model is; nothing else reads it."""
    transformer = getattr(pipe, "transformer", None)
    config = getattr(transformer, "config", None)
    if config is not None and "guidance_embeds" not in config:
        transformer.register_to_config(guidance_embeds=False)
