"""Parts the tiny builds share: the seed, the flow-matching scheduler, FLUX's VAE, and a
byte-level tokenizer with chat markers (every string tokenizes; Qwen's and Mistral's
chat templates in miniature)."""

from __future__ import annotations

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler

from generations.engine.demo_models import _bytes_to_unicode, _vae

SEED = 0


def flow_scheduler(**config) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **config)


def flux_vae() -> AutoencoderKL:
    return _vae(
        SEED,
        latent_channels=16,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def byte_tokenizer(*, eos: str, specials: tuple[str, ...], chat_template: str):
    """Qwen2's byte-level BPE layout with one token per byte (no merges) and `specials`
    as whole tokens."""
    from transformers import Qwen2Tokenizer

    vocab = {char: i for i, char in enumerate(_bytes_to_unicode().values())}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token=eos,
        pad_token=eos,
        model_max_length=1024,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
    tokenizer.chat_template = chat_template
    return tokenizer


def save_processor_files(folder, *, processor_class: str, image_processor, **config) -> None:
    """Make a saved tokenizer folder the processor folder of a real checkpoint: its image
    processor's config under the class name transformers reads, and processor_config.json
    (generations/engine/processors.py loads it on a host without torchvision)."""
    import json

    image_processor.save_pretrained(folder)
    path = folder / "preprocessor_config.json"
    saved = json.loads(path.read_text())
    saved["image_processor_type"] = processor_class.replace("Processor", "ImageProcessor")
    path.write_text(json.dumps(saved, indent=2))
    (folder / "processor_config.json").write_text(
        json.dumps({"processor_class": processor_class, **config}, indent=2)
    )


def name_component(root, component: str, library: str, class_name: str) -> None:
    """Set a component's class in a saved pipeline's model_index.json."""
    import json

    path = root / "model_index.json"
    index = json.loads(path.read_text())
    index[component] = [library, class_name]
    path.write_text(json.dumps(index, indent=2))


__all__ = [
    "SEED",
    "byte_tokenizer",
    "flow_scheduler",
    "flux_vae",
    "name_component",
    "save_processor_files",
]
