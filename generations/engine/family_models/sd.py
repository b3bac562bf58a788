"""Tiny builds of the UNet and early-transformer families: SDXL, SD 3.5 and PixArt-Sigma
(the family the project has no code of its own for)."""

from __future__ import annotations

import diffusers
import torch

from generations.engine.demo_models import (
    _build_clip_tokenizer,
    _build_t5_tokenizer,
    _clip_text_encoder,
    _t5_text_encoder,
    _vae,
)
from generations.engine.family_models.parts import SEED, flow_scheduler


def sdxl():
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = _build_clip_tokenizer()
    text_encoder = _clip_text_encoder(tokenizer, SEED)
    torch.manual_seed(SEED + 1)
    config = CLIPTextConfig(**{**text_encoder.config.to_dict(), "projection_dim": 32})
    text_encoder_2 = CLIPTextModelWithProjection(config).eval()
    torch.manual_seed(SEED)
    unet = diffusers.UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # time ids + pooled text
        cross_attention_dim=64,  # both CLIP encoders' hidden states side by side
    ).eval()
    return diffusers.StableDiffusionXLPipeline(
        vae=_vae(SEED, latent_channels=4, scaling_factor=0.13025),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=diffusers.EulerDiscreteScheduler(
            beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="trailing"
        ),
    )


def sd3():
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = _build_clip_tokenizer()
    encoders = []
    for offset in (0, 1):
        torch.manual_seed(SEED + offset)
        base = _clip_text_encoder(tokenizer, SEED + offset).config.to_dict()
        encoders.append(CLIPTextModelWithProjection(CLIPTextConfig(**base)).eval())
    tokenizer_3 = _build_t5_tokenizer(tokenizer)
    torch.manual_seed(SEED)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=32,  # T5's width (CLIP's 2 x 32 is cut to it)
        caption_projection_dim=32,
        pooled_projection_dim=64,  # both CLIP projections
        pos_embed_max_size=64,
    ).eval()
    vae = _vae(SEED, latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609)
    return diffusers.StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=flow_scheduler(shift=3.0),
        vae=vae,
        text_encoder=encoders[0],
        tokenizer=tokenizer,
        text_encoder_2=encoders[1],
        tokenizer_2=tokenizer,
        text_encoder_3=_t5_text_encoder(tokenizer_3, SEED),
        tokenizer_3=tokenizer_3,
    )


def pixart_sigma():
    """PixArt-Sigma: a family the project has no code of its own for."""
    tokenizer = _build_t5_tokenizer(_build_clip_tokenizer())
    torch.manual_seed(SEED)
    transformer = diffusers.PixArtTransformer2DModel(
        sample_size=32,  # 256 px: PixArt bins sizes by its default resolution
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    ).eval()
    return diffusers.PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_text_encoder(tokenizer, SEED),
        vae=_vae(SEED, latent_channels=4, scaling_factor=0.13025),
        transformer=transformer,
        scheduler=diffusers.DPMSolverMultistepScheduler(),
    )
