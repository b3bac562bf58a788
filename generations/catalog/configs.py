"""What a model's own files say about it, read as plain JSON (and the diffusers source as
text): the web process validates requests with it and must not import torch or diffusers.

- `model_index.json` names the pipeline class;
- the VAE's config gives its downsampling, the transformer's (or UNet's) its patch size
  and default sample size;
- the pipeline's `__call__` signature, parsed from the installed diffusers source (not
  imported), gives the arguments it takes and their defaults.

A hub id is read from the local Hugging Face cache when its files are there; a model whose
files are nowhere gives nothing, and the catalog's own fields (or the family's) stand.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

__all__ = ["call_parameters", "read_config", "derived_fields"]


def _local(source: str) -> Path | None:
    path = Path(source).expanduser()
    return path if path.is_absolute() or source.startswith(".") else None


def read_config(source: str, name: str) -> dict | None:
    """`name` (e.g. "model_index.json", "vae/config.json") of a folder or a cached hub
    repository; None when it is not on this machine or not JSON."""
    text = None
    local = _local(source)
    try:
        if local is not None:
            text = (local / name).read_text()
        elif source.count("/") == 1:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(source, name)
            if isinstance(found, str):
                text = Path(found).read_text()
    except (OSError, ValueError):
        return None
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@lru_cache(maxsize=256)
def call_parameters(pipeline: str) -> dict[str, object] | None:
    """{argument: default} of `pipeline.__call__` in the installed diffusers (defaults
    that are not literals read as None); None when the class is not found."""
    spec = importlib.util.find_spec("diffusers")
    if spec is None or not spec.origin or not pipeline.isidentifier():
        return None
    marker = f"class {pipeline}("
    for path in sorted((Path(spec.origin).parent / "pipelines").rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if marker in text:
            return _signature(ast.parse(text), pipeline)
    return None


def _signature(tree: ast.Module, pipeline: str) -> dict[str, object] | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == pipeline:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__call__":
                    return _arguments(item.args)
    return None


def _arguments(args: ast.arguments) -> dict[str, object]:
    positional = [*args.posonlyargs, *args.args][1:]  # without self
    defaults: list = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults, strict=True))
    pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    found = {}
    for arg, default in pairs:
        try:
            found[arg.arg] = ast.literal_eval(default) if default is not None else None
        except ValueError:
            found[arg.arg] = None
    return found


def _vae_scale_factor(vae: dict) -> int | None:
    if "temperal_downsample" in vae:  # Wan-style VAEs (Qwen-Image)
        return 2 ** len(vae["temperal_downsample"])
    blocks = vae.get("encoder_block_out_channels") or vae.get("block_out_channels")
    if blocks:
        return 2 ** (len(blocks) - 1)
    return None


def _patch_size(denoiser: dict) -> int | None:
    patch = denoiser.get("patch_size")
    if patch is None and denoiser.get("all_patch_size"):  # Z-Image
        patch = denoiser["all_patch_size"][0]
    if isinstance(patch, list | tuple):
        patch = patch[-1]
    return int(patch) if isinstance(patch, int | float) and patch >= 1 else None


def derived_fields(source: str) -> dict:
    """ModelSpec fields a model's files give (empty when its files are not here)."""
    index = read_config(source, "model_index.json")
    if index is None or not isinstance(index.get("_class_name"), str):
        return {}
    fields: dict = {"pipeline": index["_class_name"]}
    vae = read_config(source, "vae/config.json") or {}
    factor = _vae_scale_factor(vae)
    if factor:
        fields["vae_scale_factor"] = factor
    denoiser = (
        read_config(source, "transformer/config.json")
        or read_config(source, "unet/config.json")
        or {}
    )
    patch = _patch_size(denoiser)
    if patch:
        fields["config_patch_size"] = patch
    sample = denoiser.get("sample_size")
    if isinstance(sample, int) and factor and "unet" in index:
        fields["default_size"] = (sample * factor, sample * factor)
    return fields
