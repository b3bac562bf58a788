"""What a LoRA file holds, read from its safetensors header only: the tensors' names and
shapes, never their values, and never a pickle (``torch.load`` runs code; safetensors
cannot). Two layouts are understood, the two that diffusers' ``load_lora_weights`` loads:

- diffusers / PEFT: ``unet.<module>.lora_A.weight`` and ``lora_B`` (or the older
  ``.lora.down`` / ``.lora.up``), ``transformer.`` for transformer denoisers,
  ``text_encoder.`` / ``text_encoder_2.`` for the text encoders; a file of the denoiser
  alone may carry no prefix;
- kohya (sd-scripts): ``lora_unet_<module with _>.lora_down.weight`` / ``lora_up`` and
  ``.alpha``, ``lora_te_`` / ``lora_te1_`` / ``lora_te2_`` for the text encoders.

Web process code: imports neither torch nor diffusers (the header is JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Suffixes of the tensors of one LoRA module: (suffix, role).
_PEFT_SUFFIXES = (
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_A.bias", "extra"),
    (".lora_B.bias", "extra"),
    (".lora_magnitude_vector", "extra"),  # DoRA
    (".alpha", "extra"),
)
_KOHYA_SUFFIXES = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_mid.weight", "extra"),
    (".dora_scale", "extra"),
    (".alpha", "extra"),
)
# Prefix of a tensor name -> the pipeline component it adapts.
_PEFT_PREFIXES = (
    ("unet.", "denoiser"),
    ("transformer.", "denoiser"),
    ("text_encoder_2.", "text_encoder_2"),
    ("text_encoder_3.", "text_encoder_3"),
    ("text_encoder.", "text_encoder"),
)
_KOHYA_PREFIXES = (
    ("lora_unet_", "denoiser"),
    ("lora_transformer_", "denoiser"),
    ("lora_te2_", "text_encoder_2"),
    ("lora_te1_", "text_encoder"),
    ("lora_te_", "text_encoder"),
)
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class LoraFileError(ValueError):
    """The file is not a LoRA this server can read (the message says why)."""


@dataclass
class LoraModule:
    """One adapted module: its name as the file spells it (dots for PEFT, underscores for
    kohya), its component, and the shapes of its down (A) and up (B) matrices."""

    component: str
    name: str
    down: list[int] | None = None
    up: list[int] | None = None

    @property
    def rank(self) -> int | None:
        return self.down[0] if self.down else None


@dataclass
class LoraFile:
    layout: str  # "peft" or "kohya"
    modules: dict[tuple[str, str], LoraModule] = field(default_factory=dict)
    tensors: int = 0

    @property
    def rank(self) -> int:
        return max((m.rank or 0) for m in self.modules.values())

    @property
    def components(self) -> list[str]:
        return sorted({m.component for m in self.modules.values()})

    @property
    def target_modules(self) -> list[str]:
        """The kinds of layers adapted (the last part of each module's name)."""
        names = set()
        for module in self.modules.values():
            sep = "." if self.layout == "peft" else "_"
            last = module.name.rsplit(sep, 1)[-1]
            if self.layout == "peft" and last.isdigit():  # to_out.0
                last = ".".join(module.name.rsplit(".", 2)[-2:])
            names.add(last)
        return sorted(names)


def read_header(path: str) -> dict[str, list[int]]:
    """Tensor name -> shape, from the safetensors header of the file at `path`."""
    from safetensors import SafetensorError, safe_open

    with open(path, "rb") as handle:
        start = handle.read(8)
    if start.startswith(PICKLE_MAGIC):
        raise LoraFileError(
            "This is a pickled PyTorch checkpoint (.ckpt/.pt/.bin), which can run code when "
            "loaded: upload the adapter as .safetensors."
        )
    try:
        with safe_open(path, framework="numpy") as handle:
            return {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise LoraFileError(f"Not a readable .safetensors file: {exc}") from exc


def _split(name: str, suffixes) -> tuple[str, str] | None:
    for suffix, role in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)], role
    return None


def _component(module: str, prefixes) -> tuple[str, str] | None:
    for prefix, component in prefixes:
        if module.startswith(prefix):
            return component, module[len(prefix) :]
    return None


def analyse(shapes: dict[str, list[int]]) -> LoraFile:
    """The adapted modules of a LoRA file from its tensor names and shapes; LoraFileError
    when a tensor is not part of a LoRA (a full checkpoint, another kind of adapter)."""
    if not shapes:
        raise LoraFileError("The file holds no tensors.")
    kohya = any(name.startswith("lora_") and "." in name for name in shapes) and not any(
        ".lora_A." in name or ".lora.down." in name for name in shapes
    )
    layout = "kohya" if kohya else "peft"
    suffixes, prefixes = (
        (_KOHYA_SUFFIXES, _KOHYA_PREFIXES) if kohya else (_PEFT_SUFFIXES, _PEFT_PREFIXES)
    )
    found = LoraFile(layout=layout, tensors=len(shapes))
    for name, shape in shapes.items():
        split = _split(name, suffixes)
        if split is None:
            raise LoraFileError(
                f"The tensor '{name}' is not part of a LoRA (expected names ending in "
                f"{', '.join(s for s, role in suffixes if role != 'extra')})."
            )
        module, role = split
        where = _component(module, prefixes)
        if where is None:
            if kohya:
                raise LoraFileError(f"The tensor '{name}' names no known component.")
            where = ("denoiser", module)  # a PEFT state dict of the denoiser alone
        component, inner = where
        entry = found.modules.setdefault((component, inner), LoraModule(component, inner))
        if role == "down":
            entry.down = shape
        elif role == "up":
            entry.up = shape
    for module in found.modules.values():
        if module.down is None or module.up is None:
            raise LoraFileError(
                f"The module '{module.name}' has only one of its two LoRA matrices."
            )
        if len(module.down) < 2 or len(module.up) < 2 or module.down[0] != module.up[1]:
            raise LoraFileError(
                f"The module '{module.name}' has matrices of shapes {module.down} and "
                f"{module.up}, which do not make a low-rank pair."
            )
    return found
