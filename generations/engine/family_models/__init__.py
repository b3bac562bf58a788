"""Random-weight pipelines of every family the catalog knows, for tests and benchmarks.

Two ways to build one, both through the real pipeline classes:

- `build_tiny(name, path)`: a miniature of the family (a few MB, its real component
  classes with small widths, the demo models' tokenizers), saved with `save_pretrained`
  so `DiffusionPipeline.from_pretrained(path)` loads it like a downloaded checkpoint.
  The tests build each once into the data dir (`tiny_built()` says whether a folder is
  up to date with this package's builders). One module per maker: sd.py (SDXL, SD 3.5,
  PixArt-Sigma), flux.py (Kontext, Chroma, FLUX.2), qwen.py (Qwen-Image and its edits,
  Z-Image); text_encoders.py has their language models and processors.
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

from generations.engine import processors
from generations.engine.demo_models import _save
from generations.engine.family_models import flux, qwen, sd
from generations.engine.family_models.parts import name_component

__all__ = ["TINY_BUILDERS", "build_tiny", "from_configs", "save_random", "tiny_built"]

TINY_BUILDERS: dict[str, Callable[[], diffusers.DiffusionPipeline]] = {
    "tiny-sdxl": sd.sdxl,
    "tiny-sd3": sd.sd3,
    "tiny-pixart-sigma": sd.pixart_sigma,
    "tiny-flux-kontext": flux.kontext,
    "tiny-chroma": flux.chroma,
    "tiny-flux2-klein": flux.flux2_klein,
    "tiny-flux2-dev": flux.flux2_dev,
    "tiny-z-image": qwen.z_image,
    "tiny-qwen-image": qwen.qwen_image,
    "tiny-qwen-image-edit": qwen.qwen_image_edit,
    "tiny-qwen-image-edit-plus": qwen.qwen_image_edit_plus,
}
# Files written after save_pretrained: the processors a real checkpoint names, which
# transformers cannot build here without torchvision (generations/engine/processors.py).
_PROCESSOR_FILES: dict[str, Callable[[Path], None]] = {
    "tiny-flux2-dev": flux.flux2_dev_processor_files,
    "tiny-qwen-image-edit": qwen.processor_files,
    "tiny-qwen-image-edit-plus": qwen.processor_files,
}


def _fingerprint(name: str) -> str:
    """Changes when this package or the demo models' builders change."""
    here = Path(__file__).parent
    paths = [*sorted(here.glob("*.py")), here.parent / "demo_models.py"]
    code = b"".join(path.read_bytes() for path in paths)
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
    if name in _PROCESSOR_FILES:
        _PROCESSOR_FILES[name](Path(path))
    (path / "imagehub_build.json").write_text(json.dumps({"fingerprint": _fingerprint(name)}))


def from_configs(folder: str | Path, *, device: str = "cpu", dtype=torch.float32):
    """The pipeline of a model folder holding its configs and tokenizer files but no
    weights (e.g. `huggingface_hub.snapshot_download(repo, allow_patterns=["*.json",
    "*.txt", "*.model", "*.jinja"])`), with random weights, full size, on `device`: the
    modules are made there in `dtype` (a 32B transformer never passes through the CPU or
    float32)."""
    root = Path(folder)
    index = json.loads((root / "model_index.json").read_text())
    substitutes = processors.substitutes(str(root), local_files_only=True, index=index)
    components = dict(substitutes)
    default_dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    try:
        for name, value in index.items():
            skip = name.startswith("_") or not isinstance(value, list) or None in value
            if not skip and name not in components:
                components[name] = _random_component(root / name, *value, device=device)
    finally:
        torch.set_default_dtype(default_dtype)
    pipe = getattr(diffusers, index["_class_name"])(**components)
    return pipe.to(device=device, dtype=dtype)


def _random_component(sub: Path, library: str, class_name: str, *, device: str):
    module = diffusers if library == "diffusers" else transformers
    cls = getattr(module, class_name)
    if hasattr(cls, "from_config") and library == "diffusers":
        with torch.device(device):
            return cls.from_config(cls.load_config(sub))
    if issubclass(cls, transformers.PreTrainedModel):
        with torch.device(device):
            return cls(transformers.AutoConfig.from_pretrained(sub))
    return cls.from_pretrained(sub)  # tokenizers, processors, schedulers: files only


def save_random(configs: str | Path, folder: Path, *, device: str = "cpu", dtype=torch.float32):
    """`from_configs(configs)` saved as a diffusers folder that loads like the real model:
    the processors this host substituted keep the real checkpoint's files and class."""
    import shutil

    configs = Path(configs)
    pipe = from_configs(configs, device=device, dtype=dtype)
    _save(pipe, folder)
    index = json.loads((configs / "model_index.json").read_text())
    for name in processors.substitutes(str(configs), local_files_only=True, index=index):
        shutil.rmtree(folder / name, ignore_errors=True)
        shutil.copytree(configs / name, folder / name)
        name_component(folder, name, *index[name])
    del pipe
