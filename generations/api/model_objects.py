"""The model object of GET /v1/models, as the OpenAPI schema documents it: OpenAI's four
fields and imagehub's own (what a client may ask of the model). Schema only: the view
renders ModelSpec.as_openai() with the model's availability."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from generations.catalog import families


class ModelObjectSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["model"])
    created = serializers.IntegerField()
    owned_by = serializers.CharField()
    description = serializers.CharField()
    architecture = serializers.CharField(
        help_text="The model's family (e.g. sdxl, flux, flux2, qwen-image-edit-plus), or "
        "its diffusers pipeline class for a family imagehub has no code of its own for."
    )
    capabilities = serializers.ListField(
        child=serializers.ChoiceField(choices=list(families.CAPABILITIES)),
        help_text="What the model does: generate (POST /v1/images/generations); "
        "edit_instruction (POST /v1/images/edits without a mask: the prompt is the "
        "instruction and every image a reference, like gpt-image); edit_image_to_image "
        "(edits without a mask: the image is redrawn, `strength` says how much); inpaint "
        "(edits with a mask); variation (POST /v1/images/variations); partial_images "
        "(`stream` with `partial_images`). Anything else is a 400 naming the parameter.",
    )
    max_input_images = serializers.IntegerField(
        min_value=0,
        help_text="The most images one edit or variation takes: the reference images of "
        "an instruction edit, 1 for image-to-image, inpainting and variations, 0 for a "
        "model that does not edit. More is a 400 naming `image`.",
    )
    demo = serializers.BooleanField(help_text="Random weights: draws noise.")
    default_size = serializers.CharField(help_text="WxH used when `size` is omitted.")
    min_size = serializers.IntegerField()
    max_size = serializers.IntegerField()
    size_multiple = serializers.IntegerField()
    allowed_sizes = serializers.ListField(child=serializers.CharField())
    max_n = serializers.IntegerField()
    default_steps = serializers.IntegerField()
    max_steps = serializers.IntegerField()
    max_prompt_chars = serializers.IntegerField()
    available = serializers.BooleanField(help_text="Whether a worker can load it now.")
    unavailable_reason = serializers.CharField(allow_null=True)


class ModelListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = ModelObjectSerializer(many=True)


class ModelsSchema(AutoSchema):
    """GET /v1/models answers one list object ({"object": "list", "data": [...]}, as
    OpenAI's), not a JSON array: drf-spectacular takes a ViewSet's `list` for an array."""

    def _is_list_view(self, serializer=None) -> bool:
        return False
