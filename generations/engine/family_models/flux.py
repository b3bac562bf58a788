"""Tiny builds of Black Forest Labs' families and their kin: FLUX.1 Kontext, Chroma (a
FLUX.1 derivative), FLUX.2 [dev] (Mistral 3 encoder) and FLUX.2 [klein] (Qwen3)."""

from __future__ import annotations

from pathlib import Path

import diffusers
import torch

from generations.engine.demo_models import (
    _build_clip_tokenizer,
    _build_t5_tokenizer,
    _clip_text_encoder,
    _t5_text_encoder,
)
from generations.engine.family_models.parts import (
    SEED,
    flow_scheduler,
    flux_vae,
    name_component,
)
from generations.engine.family_models.text_encoders import (
    mistral3,
    mistral_tokenizer,
    qwen3,
    qwen_tokenizer,
    save_pixtral_processor,
)

# FLUX.1's transformer in miniature (Kontext's, and Chroma's without the pooled text).
_FLUX1_BLOCKS = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 1,
    "num_single_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "axes_dims_rope": (4, 6, 6),
}


def _flux_transformer(**config):
    torch.manual_seed(SEED)
    return diffusers.FluxTransformer2DModel(
        **_FLUX1_BLOCKS, pooled_projection_dim=32, **config
    ).eval()


def kontext():
    """FLUX.1 Kontext [dev]: FLUX.1 components, guidance-distilled."""
    tokenizer = _build_clip_tokenizer()
    tokenizer_2 = _build_t5_tokenizer(tokenizer)
    return diffusers.FluxKontextPipeline(
        scheduler=flow_scheduler(shift=3.0, use_dynamic_shifting=True),
        vae=flux_vae(),
        text_encoder=_clip_text_encoder(tokenizer, SEED),
        tokenizer=tokenizer,
        text_encoder_2=_t5_text_encoder(tokenizer_2, SEED),
        tokenizer_2=tokenizer_2,
        transformer=_flux_transformer(guidance_embeds=True),
    )


def chroma():
    tokenizer = _build_t5_tokenizer(_build_clip_tokenizer())
    torch.manual_seed(SEED)
    transformer = diffusers.ChromaTransformer2DModel(
        **_FLUX1_BLOCKS,
        approximator_num_channels=8,
        approximator_hidden_dim=32,
        approximator_layers=1,
    ).eval()
    return diffusers.ChromaPipeline(
        scheduler=flow_scheduler(shift=1.0),
        vae=flux_vae(),
        text_encoder=_t5_text_encoder(tokenizer, SEED),
        tokenizer=tokenizer,
        transformer=transformer,
    )


def _flux2_vae():
    torch.manual_seed(SEED)
    return diffusers.AutoencoderKLFlux2(
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=4,
        sample_size=256,
    ).eval()


def _flux2_transformer(text_width: int, *, guidance_embeds: bool):
    torch.manual_seed(SEED)
    return diffusers.Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,  # 32 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * text_width,  # three hidden layers of the text encoder
        timestep_guidance_channels=16,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=guidance_embeds,
    ).eval()


def flux2_klein():
    """FLUX.2 [klein]: a Qwen3 text encoder read at layers 9, 18 and 27, step-distilled."""
    tokenizer = qwen_tokenizer()
    return diffusers.Flux2KleinPipeline(
        scheduler=flow_scheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_flux2_vae(),
        text_encoder=qwen3(tokenizer, layers=28, causal_lm=True),
        tokenizer=tokenizer,
        transformer=_flux2_transformer(16, guidance_embeds=False),
        is_distilled=True,
    )


def flux2_dev():
    """FLUX.2 [dev]: a Mistral 3 text encoder read at layers 10, 20 and 30, guidance-
    distilled. Its tokenizer is Pixtral's processor (processor_files)."""
    tokenizer = mistral_tokenizer()
    return diffusers.Flux2Pipeline(
        scheduler=flow_scheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_flux2_vae(),
        text_encoder=mistral3(tokenizer, layers=30),
        tokenizer=tokenizer,
        transformer=_flux2_transformer(16, guidance_embeds=True),
    )


def flux2_dev_processor_files(root: Path) -> None:
    save_pixtral_processor(root / "tokenizer")
    name_component(root, "tokenizer", "transformers", "PixtralProcessor")
