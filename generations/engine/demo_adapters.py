"""Small random LoRA adapters for the demo models, in the diffusers/PEFT layout that real
adapters use, so a newcomer can try ``loras`` and the tests and benchmarks exercise the
real loading path (``load_lora_weights``). Like the demo models, they draw noise: random
low-rank updates of the attention projections of the denoiser and the first text
encoder. Importable without Django.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, FluxPipeline, StableDiffusionPipeline

__all__ = ["DEMO_ADAPTERS", "build_demo_adapter"]

DENOISER_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]

# demo model -> (shared adapter id, name, file name)
DEMO_ADAPTERS = {
    "demo-sd": ("adp_demo_sd_style", "demo-sd random style", "demo-sd-style.safetensors"),
    "demo-flux": ("adp_demo_flux_style", "demo-flux random style", "demo-flux-style.safetensors"),
}


def _lora_layers(module: torch.nn.Module, targets: list[str], rank: int) -> dict:
    """Random LoRA weights for `module`'s `targets` (down and up both random, so the
    adapter changes the image), as PEFT names them."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False)
    inject_adapter_in_model(config, module, adapter_name="demo")
    return get_peft_model_state_dict(module, adapter_name="demo")


def build_demo_adapter(
    model_dir: Path | str, out: Path | str, *, seed: int = 0, rank: int = 4, text_encoder=True
) -> Path:
    """Write a random LoRA for the pipeline in `model_dir` to the file `out`."""
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    model_dir, out = Path(model_dir), Path(out)
    pipe = DiffusionPipeline.from_pretrained(str(model_dir))
    torch.manual_seed(seed)
    if isinstance(pipe, FluxPipeline):
        layers = {"transformer_lora_layers": _lora_layers(pipe.transformer, DENOISER_TARGETS, rank)}
        saver = FluxPipeline
    elif isinstance(pipe, StableDiffusionPipeline):
        layers = {"unet_lora_layers": _lora_layers(pipe.unet, DENOISER_TARGETS, rank)}
        saver = StableDiffusionPipeline
    else:
        raise ValueError(f"No demo adapter for {type(pipe).__name__}")
    if text_encoder:
        layers["text_encoder_lora_layers"] = _lora_layers(
            pipe.text_encoder, TEXT_ENCODER_TARGETS, rank
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out.parent))
    try:
        saver.save_lora_weights(str(staging), weight_name="adapter.safetensors", **layers)
        (staging / "adapter.safetensors").chmod(0o644)  # workers may run as another user
        (staging / "adapter.safetensors").replace(out)  # atomic: never a half-written file
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
