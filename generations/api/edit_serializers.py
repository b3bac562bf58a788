"""Request validation of image edits and variations (OpenAI's /v1/images/edits and
/v1/images/variations), on top of the generation request's rules.

The uploads themselves are checked in generations/api/uploads.py; the validated images
and the repaint mask land in ``validated_data`` with the rest of the request, and the
service stores them next to the generation.
"""

from __future__ import annotations

from rest_framework import serializers

from generations.api.serializers import GenerationRequestSerializer, _resolve_size
from generations.api.uploads import Upload, mask_for, output_size_for, parse_inputs
from generations.catalog import ModelSpec, families

DEFAULT_EDIT_STRENGTH = 0.75
DEFAULT_VARIATION_STRENGTH = 0.6
# Fields the SDK may send that have no meaning for a diffusion model.
_IGNORED = ("input_fidelity", "safety_identifier", "image[]", "images", "images[]")


_TASKS = {
    ("edit", False): "edits an image",
    ("edit", True): "inpaints",
    ("variation", False): "makes variations",
}


def _bad(field: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: message})


class EditRequestSerializer(GenerationRequestSerializer):
    ignored = (*_IGNORED, "image", "mask")
    kind = "edit"
    default_strength = DEFAULT_EDIT_STRENGTH
    with_mask = True

    strength = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)

    def validate(self, attrs):
        self._inputs = None
        data = super().validate(attrs)
        spec: ModelSpec = data["spec"]
        images, mask = self._uploads(spec)
        if self.kind == "edit" and mask is None and spec.can(families.EDIT_INSTRUCTION):
            data.update(self._instruction(spec, images, attrs))
            return data
        strength = attrs.get("strength")
        strength = self.default_strength if strength is None else strength
        if int(data["steps"] * strength) < 1:
            raise serializers.ValidationError(
                {
                    "strength": f"strength {strength} × {data['steps']} steps leaves no "
                    "denoising step; raise 'strength' or 'num_inference_steps'."
                }
            )
        mask_image = (
            mask_for(mask, (images[0].width, images[0].height)) if mask is not None else None
        )
        data.update(
            kind=self.kind,
            strength=strength,
            images=tuple(images),
            mask=mask_image,
            input_image_tokens=sum(spec.output_tokens(u.width, u.height) for u in images),
        )
        return data

    def check_model(self, spec: ModelSpec, attrs: dict) -> None:
        """What the model cannot do with these inputs is a 400 naming the input."""
        images, mask = self._uploads(spec)
        if self.kind == "variation":
            if not spec.can(families.VARIATION):
                raise _bad("model", f"Model '{spec.id}' does not make variations.")
        elif mask is not None:
            if not spec.can(families.INPAINT):
                raise _bad("mask", f"Model '{spec.id}' does not inpaint: send no mask.")
        elif not spec.can(families.EDIT_INSTRUCTION) and not spec.can(families.EDIT_IMAGE_TO_IMAGE):
            raise _bad("image", f"Model '{spec.id}' does not edit images.")
        instruction = self.kind == "edit" and mask is None and spec.can(families.EDIT_INSTRUCTION)
        if len(images) > 1 and not instruction:
            # Image-to-image, inpainting and variations start from one image: more would be
            # charged and never seen by the model. Reference images are a model's
            # instruction edits (`edit_instruction`, `max_input_images` in /v1/models).
            raise _bad(
                "image",
                f"Model '{spec.id}' starts from one image when it {_TASKS[self.kind, bool(mask)]}; "
                f"got {len(images)}. Send one image, or use a model that edits by instruction "
                "with reference images.",
            )

    def _instruction(self, spec: ModelSpec, images: list[Upload], attrs: dict) -> dict:
        """An instruction edit: the prompt is the instruction, every image a reference."""
        if len(images) > spec.input_images:
            raise _bad(
                "image",
                f"Model '{spec.id}' takes at most {spec.input_images} reference "
                f"image{'s' if spec.input_images > 1 else ''}; got {len(images)}.",
            )
        smallest = spec.family.min_reference_side
        if any(min(u.width, u.height) < smallest for u in images):
            raise _bad(
                "image", f"Model '{spec.id}' needs images of at least {smallest} pixels a side."
            )
        aspect = spec.family.max_reference_aspect
        if aspect and any(max(u.width, u.height) > aspect * min(u.width, u.height) for u in images):
            raise _bad(
                "image",
                f"Model '{spec.id}' takes images whose long side is at most {aspect:g}x "
                "the short one.",
            )
        if attrs.get("strength") is not None:
            raise _bad(
                "strength",
                f"Model '{spec.id}' edits by instruction and takes no 'strength'.",
            )
        return {
            "kind": self.kind,
            "instruction": True,
            "strength": None,
            "images": tuple(images),
            "mask": None,
            "input_image_tokens": sum(spec.reference_tokens(u.width, u.height) for u in images),
        }

    def _uploads(self, spec: ModelSpec) -> tuple[list[Upload], Upload | None]:
        if self._inputs is None:
            self._inputs = parse_inputs(self.initial_data, spec, with_mask=self.with_mask)
        return self._inputs

    def resolve_size(self, spec: ModelSpec, attrs: dict) -> tuple[int, int]:
        images, _ = self._uploads(spec)
        if attrs.get("size") in (None, "", "auto") and attrs.get("width") is None:
            return output_size_for(spec, images[0].width, images[0].height)
        return _resolve_size(spec, attrs)


class VariationRequestSerializer(EditRequestSerializer):
    """Image-to-image of the input with an empty prompt."""

    ignored = (*_IGNORED, "image")
    kind = "variation"
    default_strength = DEFAULT_VARIATION_STRENGTH
    with_mask = False

    prompt = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, default=""
    )

    def validate(self, attrs):
        if attrs.get("stream"):
            raise serializers.ValidationError({"stream": "Variations do not stream."})
        return super().validate(attrs)

    def resolve_prompt(self, spec: ModelSpec, attrs: dict) -> str:
        return attrs.get("prompt") or ""
