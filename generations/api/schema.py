"""The limits of image requests in the served OpenAPI schema (a drf-spectacular
postprocessing hook, settings.SPECTACULAR_SETTINGS): what the serializers check against
the catalog (prompt length, steps) and the uploads the edit serializers read themselves
(`image`, `image[]`, `mask`), as schema constraints, so a client (or a fuzzer) can see
every limit. Per-model limits are the largest any model of the catalog allows; the model
a request names may allow less (400 naming the field)."""

from __future__ import annotations

from generations.api.uploads import MAX_INPUT_IMAGES
from generations.catalog import all_models

BINARY = {"type": "string", "format": "binary"}


def add_request_limits(result, generator, request, public):
    models = list(all_models())
    if not models:
        return result
    schemas = result.get("components", {}).get("schemas", {})
    for name, schema in schemas.items():
        if not name.endswith(("GenerationRequestRequest", "EditRequestRequest")) and not (
            name.endswith("VariationRequestRequest")
        ):
            continue
        properties = schema.get("properties", {})
        if "prompt" in properties:
            properties["prompt"]["maxLength"] = max(m.max_prompt_chars for m in models)
        for field in ("num_inference_steps", "num_steps"):
            if field in properties:
                properties[field]["maximum"] = max(m.max_steps for m in models)
        if name.endswith(("EditRequestRequest", "VariationRequestRequest")):
            properties["image"] = {**BINARY, "description": "The image to edit (PNG, JPEG, WebP)."}
            properties["image[]"] = {
                "type": "array",
                "items": BINARY,
                "maxItems": MAX_INPUT_IMAGES,
                "description": "Several images: the reference images of an instruction edit, "
                "up to the model's max_input_images (GET /v1/models); a model that edits "
                "one image takes one.",
            }
            if name.endswith("EditRequestRequest"):
                properties["mask"] = {
                    **BINARY,
                    "description": "Repaint where transparent (or white); the image's size.",
                }
    return result
