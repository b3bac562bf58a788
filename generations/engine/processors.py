"""Vision-language processors on a host without torchvision.

Two families keep their text encoder's processor as a pipeline component: FLUX.2 [dev]
(`tokenizer`: a PixtralProcessor for its Mistral 3 encoder) and Qwen-Image-Edit / Edit
Plus (`processor`: a Qwen2VLProcessor that turns the reference images into the Qwen2.5-VL
encoder's vision tokens). transformers builds both only with torchvision installed (their
fast image processors and Qwen's video processor are torchvision code), and imagehub does
not depend on torchvision: its torch comes from whichever index fits the host, and a
torchvision that does not match it breaks the import of torch itself.

Without torchvision the engine loads each from the model's own files, with what the
pipeline uses of it:

- PixtralProcessor -> the tokenizer of its folder (chat template included). Flux2Pipeline
  calls it only through `apply_chat_template` on text messages; images reach it only when
  prompt upsampling (`caption_upsample_temperature`) is asked, which imagehub never does.
- Qwen2VLProcessor -> the same class without its video processor, with the image
  processor's PIL/numpy implementation (`Qwen2VLImageProcessorPil`, the same resizing,
  normalisation and patching as the torchvision one).

With torchvision installed, nothing is replaced: the pipeline loads its own classes.
"""

from __future__ import annotations

import importlib.util

from generations.catalog import configs

__all__ = ["attach", "skipped", "substitutes", "torchvision_missing"]


def torchvision_missing() -> bool:
    return importlib.util.find_spec("torchvision") is None


def _pixtral(source: str, folder: str, local_files_only: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        source, subfolder=folder, local_files_only=local_files_only
    )
    if not getattr(tokenizer, "chat_template", None):
        # A processor may keep its template in chat_template.json, which only the
        # processor reads.
        saved = configs.read_config(source, f"{folder}/chat_template.json") or {}
        tokenizer.chat_template = saved.get("chat_template")
    return tokenizer


def _qwen2_vl(source: str, folder: str, local_files_only: bool):
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        """Qwen2VLProcessor for images and text: no video processor (torchvision code)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template, **kwargs)

    options = {"subfolder": folder, "local_files_only": local_files_only}
    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(source, **options)
    return ImageOnlyQwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=getattr(tokenizer, "chat_template", None),
    )


_BUILDERS = {
    "PixtralProcessor": _pixtral,
    "Qwen2VLProcessor": _qwen2_vl,
    "Qwen2_5_VLProcessor": _qwen2_vl,
}


def substitutes(source: str, *, local_files_only: bool, index: dict | None = None) -> dict:
    """{component: object} to pass to `from_pretrained` in place of the processors this
    host cannot build (empty with torchvision, or for a model without such a processor)."""
    if not torchvision_missing():
        return {}
    if index is None:
        index = configs.read_config(source, "model_index.json") or {}
    found = {}
    for name, value in index.items():
        if not (isinstance(value, list) and len(value) == 2 and value[0] == "transformers"):
            continue
        build = _BUILDERS.get(value[1])
        if build is not None:
            found[name] = build(source, name, local_files_only)
    return found


def skipped(found: dict) -> dict:
    """`from_pretrained` keyword arguments that skip loading the substituted components
    (diffusers refuses an object in place of a class it cannot import, but takes None)."""
    return dict.fromkeys(found)


def attach(pipe, found: dict):
    """The loaded pipeline with the substitutes in place of the skipped components."""
    if found:
        pipe.register_modules(**found)
    return pipe
