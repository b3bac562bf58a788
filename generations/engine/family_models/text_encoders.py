"""The tiny text encoders of the newer families and their tokenizers: Qwen3 (Z-Image,
FLUX.2 [klein]), Qwen2.5-VL with its processor (Qwen-Image and its edits), Mistral 3 with
Pixtral's processor (FLUX.2 [dev])."""

from __future__ import annotations

from pathlib import Path

import torch

from generations.engine.family_models.parts import SEED, byte_tokenizer, save_processor_files

_QWEN_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_QWEN_SPECIALS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Mistral's layout: a system prompt, then instructions whose content is a list of text
# and image parts (Flux2Pipeline's format_input).
_MISTRAL_CHAT = (
    "{% for m in messages %}{% set tag = 'SYSTEM_PROMPT' if m['role'] == 'system' "
    "else 'INST' %}[{{ tag }}]{% for part in m['content'] %}{% if part['type'] == 'text' %}"
    "{{ part['text'] }}{% else %}[IMG]{% endif %}{% endfor %}[/{{ tag }}]{% endfor %}"
)
_MISTRAL_SPECIALS = (
    "[INST]",
    "[/INST]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[IMG]",
    "[IMG_BREAK]",
    "[IMG_END]",
)


def qwen_tokenizer():
    """Every string tokenizes, and the chat template is Qwen's."""
    return byte_tokenizer(eos="<|endoftext|>", specials=_QWEN_SPECIALS, chat_template=_QWEN_CHAT)


def qwen3(tokenizer, *, layers: int, causal_lm: bool = False):
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    torch.manual_seed(SEED)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config).eval()


def qwen_vl(tokenizer):
    """A tiny Qwen2.5-VL (the text encoder of Qwen-Image, and its image reader for edits)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(SEED)
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2]},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 16,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [0],
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def save_qwen_vl_processor(folder: Path) -> None:
    """Qwen-Image-Edit's `processor/` folder: Qwen's tokenizer and Qwen2-VL's image
    processor (14-pixel patches merged 2x2; small images stay small)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    folder.mkdir(parents=True, exist_ok=True)
    qwen_tokenizer().save_pretrained(folder)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28, patch_size=14, merge_size=2
    )
    save_processor_files(
        folder, processor_class="Qwen2VLProcessor", image_processor=image_processor
    )


def mistral_tokenizer():
    return byte_tokenizer(eos="</s>", specials=_MISTRAL_SPECIALS, chat_template=_MISTRAL_CHAT)


def mistral3(tokenizer, *, layers: int):
    """A tiny Mistral 3 (Mistral Small 3.x: a Mistral language model and a Pixtral vision
    tower); FLUX.2 [dev] reads three of its hidden layers."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    torch.manual_seed(SEED)
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 2048,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "head_dim": 8,
            "image_size": 64,
            "patch_size": 16,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        vision_feature_layer=-1,
        multimodal_projector_bias=False,
    )
    return Mistral3ForConditionalGeneration(config).eval()


def save_pixtral_processor(folder: Path) -> None:
    """Make FLUX.2 [dev]'s saved `tokenizer/` folder a PixtralProcessor's, as in the real
    checkpoint."""
    from transformers.models.pixtral.image_processing_pil_pixtral import (
        PixtralImageProcessorPil,
    )

    save_processor_files(
        folder,
        processor_class="PixtralProcessor",
        image_processor=PixtralImageProcessorPil(patch_size=16, size={"longest_edge": 64}),
        patch_size=16,
        spatial_merge_size=2,
        image_token="[IMG]",
        image_break_token="[IMG_BREAK]",
        image_end_token="[IMG_END]",
    )
