"""Random-weight pipelines of every family the catalog knows, for tests and benchmarks.

Two ways to build one, both through the real pipeline classes:

- `build_tiny(name, path)`: a miniature of the family (a few MB, its real component
  classes with small widths, the demo models' tokenizers), saved with `save_pretrained`
  so `DiffusionPipeline.from_pretrained(path)` loads it like a downloaded checkpoint.
  The tests build each once into the data dir (`tiny_built()` says whether a folder is
  up to date with this module's builders).
- `from_configs(folder, device=..., dtype=...)`: the full-size architecture from a model's
  real configs (a hub snapshot of its *.json and tokenizer files, no weights), with
  random weights, on a device: what a GPU benchmark needs without downloading weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler

from generations.engine.demo_models import (
    _build_clip_tokenizer,
    _build_t5_tokenizer,
    _clip_text_encoder,
    _save,
    _t5_text_encoder,
    _vae,
)

__all__ = ["TINY_BUILDERS", "build_tiny", "from_configs", "tiny_built"]

SEED = 0


def _flow_scheduler(**config) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **config)


def _flux_vae() -> AutoencoderKL:
    return _vae(
        SEED,
        latent_channels=16,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _sdxl():
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


def _sd3():
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
        scheduler=_flow_scheduler(shift=3.0),
        vae=vae,
        text_encoder=encoders[0],
        tokenizer=tokenizer,
        text_encoder_2=encoders[1],
        tokenizer_2=tokenizer,
        text_encoder_3=_t5_text_encoder(tokenizer_3, SEED),
        tokenizer_3=tokenizer_3,
    )


def _flux_transformer(**config):
    torch.manual_seed(SEED)
    return diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 6, 6),
        **config,
    ).eval()


def _kontext():
    """FLUX.1 Kontext [dev]: FLUX.1 components, guidance-distilled."""
    tokenizer = _build_clip_tokenizer()
    tokenizer_2 = _build_t5_tokenizer(tokenizer)
    return diffusers.FluxKontextPipeline(
        scheduler=_flow_scheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_flux_vae(),
        text_encoder=_clip_text_encoder(tokenizer, SEED),
        tokenizer=tokenizer,
        text_encoder_2=_t5_text_encoder(tokenizer_2, SEED),
        tokenizer_2=tokenizer_2,
        transformer=_flux_transformer(guidance_embeds=True),
    )


def _chroma():
    tokenizer = _build_t5_tokenizer(_build_clip_tokenizer())
    torch.manual_seed(SEED)
    transformer = diffusers.ChromaTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 6, 6),
        approximator_num_channels=8,
        approximator_hidden_dim=32,
        approximator_layers=1,
    ).eval()
    return diffusers.ChromaPipeline(
        scheduler=_flow_scheduler(shift=1.0),
        vae=_flux_vae(),
        text_encoder=_t5_text_encoder(tokenizer, SEED),
        tokenizer=tokenizer,
        transformer=transformer,
    )


def _pixart_sigma():
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


_CHAT_TEMPLATE = (
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


def _qwen_tokenizer():
    """Qwen2's byte-level BPE layout with one token per byte (no merges) and its chat
    markers: every string tokenizes, and the chat template is Qwen's."""
    from transformers import Qwen2Tokenizer

    from generations.engine.demo_models import _bytes_to_unicode

    vocab = {char: i for i, char in enumerate(_bytes_to_unicode().values())}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(_QWEN_SPECIALS)})
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def _qwen3(tokenizer, *, layers: int, causal_lm: bool = False):
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


def _z_image():
    tokenizer = _qwen_tokenizer()
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
        scheduler=_flow_scheduler(shift=3.0),
        vae=_flux_vae(),
        text_encoder=_qwen3(tokenizer, layers=2),
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


def _flux2_klein():
    """FLUX.2 [klein]: a Qwen3 text encoder read at layers 9, 18 and 27, step-distilled."""
    tokenizer = _qwen_tokenizer()
    return diffusers.Flux2KleinPipeline(
        scheduler=_flow_scheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_flux2_vae(),
        text_encoder=_qwen3(tokenizer, layers=28, causal_lm=True),
        tokenizer=tokenizer,
        transformer=_flux2_transformer(16, guidance_embeds=False),
        is_distilled=True,
    )


def _qwen_vl(tokenizer):
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


def _qwen_image_components() -> dict:
    tokenizer = _qwen_tokenizer()
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
        "scheduler": _flow_scheduler(shift=1.0, use_dynamic_shifting=True),
        "vae": vae,
        "text_encoder": _qwen_vl(tokenizer),
        "tokenizer": tokenizer,
        "transformer": transformer,
    }


def _qwen_image():
    return diffusers.QwenImagePipeline(**_qwen_image_components())


TINY_BUILDERS: dict[str, Callable[[], diffusers.DiffusionPipeline]] = {
    "tiny-sdxl": _sdxl,
    "tiny-sd3": _sd3,
    "tiny-flux-kontext": _kontext,
    "tiny-chroma": _chroma,
    "tiny-pixart-sigma": _pixart_sigma,
    "tiny-z-image": _z_image,
    "tiny-flux2-klein": _flux2_klein,
    "tiny-qwen-image": _qwen_image,
}


def _fingerprint(name: str) -> str:
    """Changes when this module or the demo models' builders change."""
    code = Path(__file__).read_bytes() + Path(__file__).with_name("demo_models.py").read_bytes()
    versions = f"{diffusers.__version__} {transformers.__version__} {name}".encode()
    return hashlib.sha256(code + versions).hexdigest()[:16]


def tiny_built(name: str, path: Path) -> bool:
    try:
        stamp = json.loads((path / "imagehub_build.json").read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("fingerprint") == _fingerprint(name)


def build_tiny(name: str, path: Path) -> None:
    """Write the tiny `name` pipeline to `path` (a folder that may not exist yet)."""
    pipe = TINY_BUILDERS[name]()
    _save(pipe, path)
    (path / "imagehub_build.json").write_text(json.dumps({"fingerprint": _fingerprint(name)}))


def from_configs(folder: str | Path, *, device: str = "cpu", dtype=torch.float32):
    """The pipeline of a model folder holding its configs and tokenizer files but no
    weights (e.g. `huggingface_hub.snapshot_download(repo, allow_patterns=["*.json",
    "*.txt", "*.model", "*.jinja"])`), with random weights, full size, on `device`."""
    root = Path(folder)
    index = json.loads((root / "model_index.json").read_text())
    components = {}
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or None in value:
            continue
        library, class_name = value
        module = diffusers if library == "diffusers" else transformers
        cls = getattr(module, class_name)
        sub = root / name
        if hasattr(cls, "from_config") and library == "diffusers":
            with torch.device(device):
                components[name] = cls.from_config(cls.load_config(sub))
        elif issubclass(cls, transformers.PreTrainedModel):
            with torch.device(device):
                components[name] = cls(transformers.AutoConfig.from_pretrained(sub))
        else:  # tokenizers, processors, schedulers: their files are the whole thing
            components[name] = cls.from_pretrained(sub)
    pipe = getattr(diffusers, index["_class_name"])(**components)
    return pipe.to(device=device, dtype=dtype)
