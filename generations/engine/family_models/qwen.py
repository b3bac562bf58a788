"""Tiny builds of Alibaba's families: Qwen-Image, Qwen-Image-Edit, Qwen-Image-Edit Plus
(a Qwen2.5-VL encoder that also reads the reference images) and Z-Image (Qwen3)."""

from __future__ import annotations

from pathlib import Path

import diffusers
import torch

from generations.engine.family_models.parts import SEED, flow_scheduler, flux_vae, name_component
from generations.engine.family_models.text_encoders import (
    qwen3,
    qwen_tokenizer,
    qwen_vl,
    save_qwen_vl_processor,
)


def z_image():
    tokenizer = qwen_tokenizer()
    torch.manual_seed(SEED)
    transformer = diffusers.ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=16,  # the text encoder's width
        axes_dims=[8, 4, 4],
        axes_lens=[1024, 64, 64],
    ).eval()
    return diffusers.ZImagePipeline(
        scheduler=flow_scheduler(shift=3.0),
        vae=flux_vae(),
        text_encoder=qwen3(tokenizer, layers=2),
        tokenizer=tokenizer,
        transformer=transformer,
    )


def _components() -> dict:
    tokenizer = qwen_tokenizer()
    torch.manual_seed(SEED)
    vae = diffusers.AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    ).eval()
    torch.manual_seed(SEED)
    transformer = diffusers.QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(4, 6, 6),
    ).eval()
    return {
        "scheduler": flow_scheduler(shift=1.0, use_dynamic_shifting=True),
        "vae": vae,
        "text_encoder": qwen_vl(tokenizer),
        "tokenizer": tokenizer,
        "transformer": transformer,
    }


def qwen_image():
    return diffusers.QwenImagePipeline(**_components())


def qwen_image_edit():
    # The processor is written after saving (processor_files): transformers builds a
    # Qwen2VLProcessor only with torchvision; the engine loads it without.
    return diffusers.QwenImageEditPipeline(processor=None, **_components())


def qwen_image_edit_plus():
    return diffusers.QwenImageEditPlusPipeline(processor=None, **_components())


def processor_files(root: Path) -> None:
    save_qwen_vl_processor(root / "processor")
    name_component(root, "processor", "transformers", "Qwen2VLProcessor")
