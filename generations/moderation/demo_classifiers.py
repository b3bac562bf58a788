"""Tiny random-weight classifiers for the policy's classifier paths, built the way the demo
diffusion models are (generations/engine/demo_models.py): real architectures (BERT for
text, ViT for images) with random weights and a locally made tokenizer, written with
``save_pretrained`` so that ``transformers.pipeline(task, model=folder)`` loads them like
a downloaded checkpoint. Their verdicts are noise, by design: a threshold of 0 flags
everything, 1 nothing; in between, whatever the random weights say (deterministic for a
given input).

    manage.py build_demo_classifiers [--dir DIR]

Labels: ``safe`` and ``unsafe`` (map ``unsafe`` to a category in the policy file).
Imported only by that command and the tests, never by the web process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

LABELS = {0: "safe", 1: "unsafe"}
TEXT = "demo-text-classifier"
IMAGE = "demo-image-classifier"
_WORDS = (
    "a an the of in on with and or to photo painting picture portrait landscape city "
    "forest sea sky cat dog bird lighthouse mountain river tree house car street night "
    "day red blue green yellow black white purple big small old new happy sad dark "
    "light violence weapon gun blood knife fight war nude naked sexy explicit"
).split()


def build_text_classifier(path: Path, *, seed: int = 0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "vocab.txt"
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        vocab.write_text("\n".join(specials + letters + [f"##{c}" for c in letters] + _WORDS))
        tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def build_image_classifier(path: Path, *, seed: int = 0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )
    model = ViTForImageClassification(config).eval()
    model.save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


BUILDERS = {TEXT: build_text_classifier, IMAGE: build_image_classifier}


def is_built(path: Path) -> bool:
    return (path / "config.json").exists() and any(path.glob("*.safetensors"))
