"""The base model's side of the upload check: which modules its denoiser and text
encoders have, with the shapes of their weights, read from the safetensors headers of its
own files (a local folder, or a hub id in the local Hugging Face cache); then whether each
module a LoRA adapts is one of them, with matching input and output sizes.

No torch: the web process runs this. A model whose files are not on the web host cannot
be checked here; the upload is then checked for its layout only, and the worker's load is
the final check (a mismatch fails that job with ``adapter_error``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from generations.adapters.lora_files import LoraFile, LoraFileError, read_header
from generations.catalog import ModelSpec

DENOISERS = ("unet", "transformer")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
# Prefixes some checkpoints give their text encoder's modules and others do not
# (transformers' CLIP "text_model.", T5 wrappers): compared without them.
_OPTIONAL_PREFIXES = ("text_model.", "model.")


class AdapterMismatch(ValueError):
    """The adapter's tensors do not fit the base model (the message says which)."""


class OriginalNames(ValueError):
    """A kohya file named after the original checkpoint's modules (LDM, BFL), which this
    check cannot map to the model's diffusers modules."""


# Module names of the original (non-diffusers) checkpoints, as kohya files spell them.
ORIGINAL_NAMES = ("input_blocks", "output_blocks", "middle_block", "double_blocks", "single_blocks")


def model_folder(spec: ModelSpec) -> Path | None:
    """The folder holding the model's files on this host, or None."""
    source = spec.source
    local = Path(source).expanduser()
    if local.is_absolute() or source.startswith("."):
        return local if (local / "model_index.json").is_file() else None
    if source.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "model_index.json")
    except (OSError, ValueError):
        return None
    return Path(found).parent if isinstance(found, str) else None


def _normalise(name: str) -> str:
    for prefix in _OPTIONAL_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    plain = [f for f in files if f.name.count(".") == 1]  # not model.fp16.safetensors
    return plain or files


@lru_cache(maxsize=32)
def _component_index(folder: str, mtime: float) -> dict[str, list[int]]:
    """Module name -> weight shape of one component folder (cached per folder and time)."""
    modules: dict[str, list[int]] = {}
    for path in _weight_files(Path(folder)):
        try:
            shapes = read_header(str(path))
        except LoraFileError:
            continue
        for name, shape in shapes.items():
            if name.endswith(".weight"):
                modules[_normalise(name[: -len(".weight")])] = shape
    return modules


def module_index(spec: ModelSpec) -> dict[str, dict[str, list[int]]] | None:
    """{component: {module: weight shape}} for the denoiser ("denoiser") and each text
    encoder of the model; None when its files are not on this host."""
    folder = model_folder(spec)
    if folder is None:
        return None
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return None
    found: dict[str, dict[str, list[int]]] = {}
    for component in (*DENOISERS, *TEXT_ENCODERS):
        sub = folder / component
        if component not in index or not sub.is_dir():
            continue
        key = "denoiser" if component in DENOISERS else component
        found[key] = _component_index(str(sub.resolve()), sub.stat().st_mtime)
    return found or None


def check_fits(lora: LoraFile, spec: ModelSpec) -> bool:
    """Raise AdapterMismatch unless every module the LoRA adapts is a module of the base
    model with the same input and output sizes. Returns False when the model's files are
    not here to check against (the layout alone was checked)."""
    index = module_index(spec)
    if index is None:
        return False
    unknown: list[str] = []
    for module in lora.modules.values():
        modules = index.get(module.component)
        if modules is None:
            raise AdapterMismatch(
                f"The adapter adapts the model's {module.component.replace('_', ' ')}, "
                f"which model '{spec.id}' does not have."
            )
        shape = _find(modules, module.name, kohya=lora.layout == "kohya")
        if shape is None:
            unknown.append(module.name)
            continue
        _check_shapes(module, shape, spec)
    if (
        unknown
        and lora.layout == "kohya"
        and any(marker in name for name in unknown for marker in ORIGINAL_NAMES)
    ):
        raise OriginalNames(
            "The adapter uses the original checkpoint's module names (kohya with "
            f"'{unknown[0]}'); this server reads diffusers module names: convert the file "
            "(e.g. with diffusers' conversion scripts) and upload it again."
        )
    if unknown:
        listed = ", ".join(f"'{name}'" for name in unknown[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise AdapterMismatch(
            f"The adapter's modules {listed}{more} are not modules of model '{spec.id}': "
            "it was trained for another base model."
        )
    return True


@lru_cache(maxsize=64)
def _kohya_names(names: frozenset[str]) -> dict[str, str]:
    return {name.replace(".", "_"): name for name in names}


def _find(modules: dict[str, list[int]], name: str, *, kohya: bool) -> list[int] | None:
    name = _normalise(name)
    if not kohya:
        return modules.get(name)
    flat = _kohya_names(frozenset(modules))
    for prefix in ("", "text_model_"):
        if name.startswith(prefix) and name[len(prefix) :] in flat:
            return modules[flat[name[len(prefix) :]]]
    return None


def _check_shapes(module, weight: list[int], spec: ModelSpec) -> None:
    """down: (rank, in[, kh, kw]); up: (out, rank[, 1, 1]); the module's weight: (out, in…)."""
    if len(weight) < 2:
        return  # a norm or an embedding: diffusers decides
    out_features, in_features = weight[0], weight[1]
    if module.down[1] != in_features or module.up[0] != out_features:
        raise AdapterMismatch(
            f"The adapter's module '{module.name}' maps {module.down[1]} to {module.up[0]} "
            f"features; in model '{spec.id}' it maps {in_features} to {out_features}: it was "
            "trained for another base model."
        )
