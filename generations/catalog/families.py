"""Model families: what the catalog knows of each diffusers pipeline class beyond what its
configs say. Plain data, read by the web process (validation, /v1/models) and by the
engine (how to call the pipeline); nothing here imports torch or diffusers.

A pipeline class listed in no family still serves: `generic()` describes it from its
configs and its `__call__` signature (generations/catalog/configs.py), text-to-image only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# What a model can do, as /v1/models lists it.
GENERATE = "generate"
EDIT_INSTRUCTION = "edit_instruction"
EDIT_IMAGE_TO_IMAGE = "edit_image_to_image"
INPAINT = "inpaint"
VARIATION = "variation"
PARTIAL_IMAGES = "partial_images"
CAPABILITIES = (GENERATE, EDIT_INSTRUCTION, EDIT_IMAGE_TO_IMAGE, INPAINT, VARIATION, PARTIAL_IMAGES)
# How the pages (the key form, the models page) name them.
CAPABILITY_LABELS = {
    GENERATE: "generate",
    EDIT_INSTRUCTION: "instruction edit",
    EDIT_IMAGE_TO_IMAGE: "image-to-image",
    INPAINT: "inpaint",
    VARIATION: "variations",
    PARTIAL_IMAGES: "partial images",
}

_UNET = (GENERATE, EDIT_IMAGE_TO_IMAGE, INPAINT, VARIATION, PARTIAL_IMAGES)


@dataclass(frozen=True)
class Family:
    name: str
    pipeline: str  # the diffusers class of its model_index.json
    capabilities: tuple[str, ...]
    # Latent pixels packed into one token along a side (FLUX packs 2x2 latents; a UNet
    # denoises each latent pixel). 0: the transformer config's patch size.
    packing: int = 1
    # The component whose tokenizer counts `text_tokens` (the main text encoder's).
    tokenizer: str = "tokenizer"
    # The call argument the API's `guidance_scale` feeds ("" where the pipeline has none).
    guidance: str = "guidance_scale"
    # None: from the signature (a `negative_prompt` argument); False where the argument
    # exists but does nothing by default (FLUX.1 runs true CFG only with true_cfg_scale).
    negative_prompt: bool | None = None
    # Reference images one instruction edit takes (0: none; 1 for image-to-image).
    max_input_images: int = 1
    # How the pipeline sizes a reference image before its VAE (see fed_size()).
    reference_rule: str = ""
    # The smallest side a reference image may have, and its longest side over its
    # shortest at most (FLUX.2's Flux2ImageProcessor.check_image_input refuses others).
    min_reference_side: int = 0
    max_reference_aspect: float = 0.0
    # dtype on CUDA: the one the family is trained and released in.
    dtype: str = "bfloat16"
    # Pipelines built on the loaded one for image-to-image and inpainting when
    # diffusers' AutoPipeline has no mapping for the family.
    img2img_pipeline: str = ""
    inpaint_pipeline: str = ""
    # How latents are laid out in a step callback, for partial images (engine/latents.py).
    latent_layout: str = "spatial"
    # Whether classifier-free guidance runs the unconditional pass in the same denoiser
    # call (twice the batch: the memory estimate doubles) or in a second call.
    cfg_batched: bool = True

    def takes_several_images(self) -> bool:
        return self.max_input_images > 1


FAMILIES: dict[str, Family] = {
    f.pipeline: f
    for f in (
        Family("sd", "StableDiffusionPipeline", _UNET, dtype="float16"),
        Family("sdxl", "StableDiffusionXLPipeline", _UNET, dtype="float16"),
        Family("sd3", "StableDiffusion3Pipeline", _UNET, packing=2, tokenizer="tokenizer_3"),
        Family(
            "flux",
            "FluxPipeline",
            _UNET,
            packing=2,
            tokenizer="tokenizer_2",
            negative_prompt=False,
            latent_layout="flux",
            cfg_batched=False,
        ),
        Family(
            "flux-kontext",
            "FluxKontextPipeline",
            (GENERATE, EDIT_INSTRUCTION, PARTIAL_IMAGES),
            packing=2,
            tokenizer="tokenizer_2",
            negative_prompt=False,
            reference_rule="kontext",
            latent_layout="flux",
            cfg_batched=False,
        ),
        Family(
            "flux2",
            "Flux2Pipeline",
            (GENERATE, EDIT_INSTRUCTION, PARTIAL_IMAGES),
            packing=2,
            max_input_images=10,
            reference_rule="flux2",
            min_reference_side=64,
            max_reference_aspect=8,
            latent_layout="flux2",
        ),
        Family(
            "flux2-klein",
            "Flux2KleinPipeline",
            (GENERATE, EDIT_INSTRUCTION, PARTIAL_IMAGES),
            packing=2,
            max_input_images=4,
            reference_rule="flux2",
            min_reference_side=64,
            max_reference_aspect=8,
            latent_layout="flux2",
        ),
        Family(
            "qwen-image",
            "QwenImagePipeline",
            (GENERATE, EDIT_IMAGE_TO_IMAGE, INPAINT, VARIATION, PARTIAL_IMAGES),
            packing=2,
            guidance="true_cfg_scale",
            latent_layout="qwen",
            cfg_batched=False,
        ),
        Family(
            "qwen-image-edit",
            "QwenImageEditPipeline",
            (EDIT_INSTRUCTION, PARTIAL_IMAGES),
            packing=2,
            guidance="true_cfg_scale",
            reference_rule="qwen",
            latent_layout="qwen",
            cfg_batched=False,
        ),
        Family(
            "qwen-image-edit-plus",
            "QwenImageEditPlusPipeline",
            (EDIT_INSTRUCTION, PARTIAL_IMAGES),
            packing=2,
            guidance="true_cfg_scale",
            max_input_images=3,
            reference_rule="qwen",
            latent_layout="qwen",
            cfg_batched=False,
        ),
        Family(
            "z-image",
            "ZImagePipeline",
            _UNET,
            packing=2,
        ),
        Family(
            "chroma",
            "ChromaPipeline",
            _UNET,
            packing=2,
            img2img_pipeline="ChromaImg2ImgPipeline",
            # Fails as released in diffusers 0.42 (it reads FLUX's guidance_embeds from
            # Chroma's transformer config); engine/families.py declares it absent.
            inpaint_pipeline="ChromaInpaintPipeline",
            latent_layout="flux",
            cfg_batched=False,
        ),
    )
}
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES.values()}


def generic(pipeline: str) -> Family:
    """A pipeline class no family describes: text-to-image with what its configs say."""
    return Family(name=pipeline, pipeline=pipeline, capabilities=(GENERATE,), packing=0)


def family_of(pipeline: str) -> Family:
    return FAMILIES.get(pipeline) or generic(pipeline)


# --- the sizes a pipeline feeds its VAE for a reference image ----------------------------

# FluxKontextPipeline's PREFERRED_KONTEXT_RESOLUTIONS (its _auto_resize picks the nearest
# aspect ratio).
_KONTEXT_SIZES = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248),
    (880, 1184), (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832),
    (1328, 800), (1392, 752), (1456, 720), (1504, 688), (1568, 672),
)  # fmt: skip
_MEGAPIXEL_AREA = 1024 * 1024


def fed_size(family: Family, width: int, height: int, multiple: int) -> tuple[int, int]:
    """The size a reference image of `width`x`height` has when the pipeline encodes it,
    following the pipeline's own resizing (`multiple`: its latent pixels per token)."""
    ratio = width / height
    if family.reference_rule == "kontext":
        _, width, height = min((abs(ratio - w / h), w, h) for w, h in _KONTEXT_SIZES)
    elif family.reference_rule == "qwen":
        # QwenImageEdit(Plus)Pipeline: calculate_dimensions(1024 * 1024, ratio).
        exact = math.sqrt(_MEGAPIXEL_AREA * ratio)
        width, height = round(exact / 32) * 32, round(exact / ratio / 32) * 32
    elif family.reference_rule == "flux2" and width * height > _MEGAPIXEL_AREA:
        # Flux2ImageProcessor._resize_to_target_area.
        scale = math.sqrt(_MEGAPIXEL_AREA / (width * height))
        width, height = int(width * scale), int(height * scale)
    return width // multiple * multiple, height // multiple * multiple
