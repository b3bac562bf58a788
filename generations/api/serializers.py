"""Request validation of the Images API: validated data is the keyword arguments of a
`GenerationRequest` (generations/types.py). Validation only: pricing, seeds and
permissions are the service's business.

Every invalid field becomes a 400 that names it as `param`, like OpenAI's API does.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.webhooks import endpoints
from accounts.webhooks.events import EVENTS
from generations.adapters.requests import parse_loras, resolve_loras
from generations.catalog import QUALITIES, ModelSpec, families, get_model
from generations.moderation.checks import effective_level
from generations.moderation.policy import LEVELS
from imagehub.errors import InvalidRequest, NotFound

SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
MAX_SEED = 2**63 - 1
OPENAI_STYLES = ("vivid", "natural")


class StrictSerializer(serializers.Serializer):
    """Rejects parameters it does not know, naming the first one (OpenAI does the same)."""

    # Fields the OpenAI SDK or common clients send that we accept and ignore.
    ignored: tuple[str, ...] = ()

    def to_internal_value(self, data):
        if isinstance(data, dict):
            for key in data:
                if (
                    key not in self.fields
                    and key not in self.ignored
                    and not key.startswith(FORM_LIST_PREFIXES)
                ):
                    raise serializers.ValidationError({key: f"Unknown parameter: '{key}'."})
        if type(data) is dict:  # a JSON body (form data arrives as a QueryDict of strings)
            for key, value in data.items():
                field = self.fields.get(key)
                if field is not None and value is not None and not _json_type_ok(field, value):
                    raise serializers.ValidationError(
                        {key: f"Expected {_JSON_TYPE_NAMES[type(field)]}, got {_json_type(value)}."}
                    )
        return super().to_internal_value(data)


# JSON bodies are typed the way OpenAI's spec types them: no "123" for 123, no 123 for "123".
_JSON_TYPES = {
    serializers.CharField: (str,),
    serializers.ChoiceField: (str,),
    serializers.IntegerField: (int,),
    serializers.FloatField: (int, float),
    serializers.BooleanField: (bool,),
}
_JSON_TYPE_NAMES = {
    serializers.CharField: "a string",
    serializers.ChoiceField: "a string",
    serializers.IntegerField: "an integer",
    serializers.FloatField: "a number",
    serializers.BooleanField: "a boolean",
}


def _json_type_ok(field, value) -> bool:
    expected = _JSON_TYPES.get(type(field))
    if expected is None:
        return True
    if isinstance(value, bool) and bool not in expected:
        return False
    return isinstance(value, expected)


def _json_type(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "an array" if isinstance(value, list) else "an object"
    )


@extend_schema_field(
    {
        "type": "array",
        "maxItems": settings.MAX_ADAPTERS_PER_REQUEST,
        "items": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "string", "description": "adp_…"},
                "scale": {"type": "number", "minimum": -2, "maximum": 2, "default": 1},
            },
            "additionalProperties": False,
        },
    }
)
class LorasField(serializers.Field):
    """`loras`: a JSON list of {"id", "scale"}; in a form (edits), a JSON string, or the
    fields the OpenAI SDK sends for `extra_body={"loras": [...]}` on a multipart request
    (`loras[][id]`, `loras[][scale]`, repeated; or `loras[0][id]`)."""

    def get_value(self, dictionary):
        if hasattr(dictionary, "getlist"):  # form data
            return _loras_from_form(dictionary)
        return super().get_value(dictionary)

    def to_internal_value(self, data):
        try:
            return parse_loras(data)
        except InvalidRequest as exc:
            raise serializers.ValidationError(exc.message) from exc

    def to_representation(self, value):
        return value


def _loras_from_form(form):
    if form.get("loras") not in (None, ""):
        try:
            return json.loads(form.get("loras"))
        except ValueError:
            return form.get("loras")
    ids, scales = form.getlist("loras[][id]"), form.getlist("loras[][scale]")
    if ids:
        if scales and len(scales) != len(ids):
            return "give every adapter a scale, or none"
        return [
            {"id": id_, **({"scale": scales[i]} if scales else {})} for i, id_ in enumerate(ids)
        ]
    indexed: dict[int, dict] = {}
    for key in form:
        match = _INDEXED_LORA.match(key)
        if match:
            indexed.setdefault(int(match.group(1)), {})[match.group(2)] = form.get(key)
    if indexed:
        return [indexed[i] for i in sorted(indexed)]
    return serializers.empty


_INDEXED_LORA = re.compile(r"^loras\[(\d+)\]\[(id|scale)\]$")
FORM_LIST_PREFIXES = ("loras[",)


class WebhookEventsField(serializers.ListField):
    """A JSON list, repeated form fields, or one comma-separated form field."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.ChoiceField(choices=EVENTS), **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [part.strip() for part in data.split(",") if part.strip()]
        elif isinstance(data, list) and len(data) == 1 and isinstance(data[0], str):
            data = [part.strip() for part in data[0].split(",") if part.strip()]
        return super().to_internal_value(data)


class GenerationRequestSerializer(StrictSerializer):
    prompt = serializers.CharField(trim_whitespace=False, allow_blank=False)
    model = serializers.CharField(required=False, allow_null=True, max_length=200)
    n = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10)
    size = serializers.CharField(required=False, allow_null=True, max_length=20)
    width = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=16384)
    height = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=16384)
    quality = serializers.ChoiceField(choices=QUALITIES, required=False, allow_null=True)
    style = serializers.ChoiceField(choices=OPENAI_STYLES, required=False, allow_null=True)
    response_format = serializers.ChoiceField(
        choices=("url", "b64_json"), required=False, allow_null=True
    )
    output_format = serializers.ChoiceField(
        choices=("png", "jpeg", "webp"), required=False, allow_null=True
    )
    output_compression = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    background = serializers.ChoiceField(
        choices=("auto", "opaque"), required=False, allow_null=True
    )
    user = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=256)
    negative_prompt = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False, max_length=4000
    )
    num_inference_steps = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    num_steps = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    guidance_scale = serializers.FloatField(
        required=False, allow_null=True, min_value=0, max_value=50
    )
    seed = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=MAX_SEED
    )
    stream = serializers.BooleanField(required=False, allow_null=True)
    partial_images = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=3
    )
    moderation = serializers.ChoiceField(
        choices=LEVELS, required=False, allow_null=True,
        help_text="The operator's content policy: 'auto' (default) applies every "
        "category, 'low' skips the categories the operator marked as relaxable.",
    )  # fmt: skip
    # imagehub extensions: a signed webhook for this generation's events.
    webhook = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=2000,
        help_text="A URL that gets this generation's events (signed, Standard Webhooks); "
        "default: the organization's webhook, if set.",
    )  # fmt: skip
    webhook_events = WebhookEventsField(
        required=False, allow_null=True, max_length=len(EVENTS),
        help_text="Which events to send: queued, started, partial, completed, failed, "
        "canceled (default: the organization's choice, else all).",
    )  # fmt: skip
    # imagehub extension: the organization's LoRA adapters for this request.
    loras = LorasField(
        required=False, allow_null=True,
        help_text='LoRA adapters of your organization: [{"id": "adp_…", "scale": 0.8}] (at '
        "most IMAGEHUB_MAX_ADAPTERS_PER_REQUEST, default 3; scale from -2 to 2, default 1).",
    )  # fmt: skip

    def validate_webhook(self, value):
        if not value:
            return ""
        try:
            value = endpoints.webhook_url_check(value, param="webhook")
        except InvalidRequest as exc:
            raise serializers.ValidationError(exc.message) from exc
        request = self.context.get("request")
        organization = getattr(getattr(request, "auth", None), "organization", None)
        if organization is not None and not endpoints.webhook_endpoint_get(
            organization_id=organization.pk
        ):
            raise serializers.ValidationError(
                "Your organization has no webhook signing secret yet: create it on the "
                "Webhooks page or with PUT /v1/webhook (it is shown once), then send "
                "'webhook' again."
            )
        return value

    def validate(self, attrs):
        spec = _resolve_model(attrs.get("model"))
        self.check_model(spec, attrs)
        _check_parameters(spec, attrs)
        prompt = self.resolve_prompt(spec, attrs)
        _check_prompts(spec, prompt, attrs.get("negative_prompt"))
        n = attrs.get("n") or 1
        if n > spec.max_n:
            raise serializers.ValidationError(
                {
                    "n": f"Model '{spec.id}' generates at most {spec.max_n} images per "
                    f"request; got {n}."
                }
            )
        seed = attrs.get("seed")
        if seed is not None and seed + n - 1 > MAX_SEED:
            # Image i is drawn with seed + i: the last one must fit too.
            raise serializers.ValidationError(
                {"seed": f"With n={n}, seed may be at most {MAX_SEED - n + 1}."}
            )
        width, height = self.resolve_size(spec, attrs)
        steps, quality = _resolve_steps(spec, attrs)
        guidance = attrs.get("guidance_scale")
        request = self.context.get("request")
        loras = resolve_loras(
            entries=attrs.get("loras") or [],
            spec=spec,
            organization=getattr(getattr(request, "auth", None), "organization", None),
        )
        return {
            "spec": spec,
            "prompt": prompt,
            "negative_prompt": attrs.get("negative_prompt") or "",
            "n": n,
            "width": width,
            "height": height,
            "steps": steps,
            "quality": quality,
            "guidance_scale": spec.default_guidance if guidance is None else guidance,
            "seed": attrs.get("seed"),
            "response_format": attrs.get("response_format") or settings.DEFAULT_RESPONSE_FORMAT,
            "output_format": attrs.get("output_format") or "png",
            "output_compression": attrs.get("output_compression"),
            "end_user": attrs.get("user") or "",
            "style": attrs.get("style"),
            "stream": bool(attrs.get("stream")),
            "partial_images": attrs.get("partial_images") or 0,
            "webhook": attrs.get("webhook") or "",
            "webhook_events": tuple(
                endpoints.webhook_events_check(attrs.get("webhook_events") or [])
            ),
            "moderation": effective_level(attrs.get("moderation"), _organization(self)),
            "loras": loras,
        }

    # Hooks that edits and variations override (generations/api/edit_serializers.py).
    def check_model(self, spec: ModelSpec, attrs: dict) -> None:
        if not spec.can(families.GENERATE):
            raise serializers.ValidationError(
                {
                    "model": f"Model '{spec.id}' edits images and cannot draw from a prompt "
                    "alone: send its images to /v1/images/edits."
                }
            )

    def resolve_prompt(self, spec: ModelSpec, attrs: dict) -> str:
        prompt = attrs["prompt"]
        if not prompt.strip():
            raise serializers.ValidationError({"prompt": "The prompt must not be empty."})
        return prompt

    def resolve_size(self, spec: ModelSpec, attrs: dict) -> tuple[int, int]:
        return _resolve_size(spec, attrs)


def _organization(serializer):
    request = serializer.context.get("request")
    return getattr(getattr(request, "auth", None), "organization", None)


def _resolve_model(name: str | None) -> ModelSpec:
    spec = get_model(name)
    if spec is None:
        raise NotFound(
            f"The model '{name}' does not exist. GET /v1/models lists the models this "
            "server offers.",
            param="model",
            code="model_not_found",
        )
    return spec


def _check_parameters(spec: ModelSpec, attrs: dict) -> None:
    """A parameter the model's pipeline has no use for is a 400 naming it."""
    if (
        attrs.get("stream")
        and attrs.get("partial_images")
        and not spec.can(families.PARTIAL_IMAGES)
    ):
        raise serializers.ValidationError(
            {"partial_images": f"Model '{spec.id}' cannot show partial images."}
        )
    taken = spec.call_parameters
    if attrs.get("guidance_scale") is not None and taken and spec.family.guidance not in taken:
        raise serializers.ValidationError(
            {"guidance_scale": f"Model '{spec.id}' takes no guidance scale."}
        )


def _check_prompts(spec: ModelSpec, prompt: str, negative_prompt: str | None) -> None:
    if len(prompt) > spec.max_prompt_chars:
        raise serializers.ValidationError(
            {
                "prompt": f"The prompt is {len(prompt)} characters long; model '{spec.id}' "
                f"accepts at most {spec.max_prompt_chars}."
            }
        )
    if negative_prompt and not spec.supports_negative_prompt:
        raise serializers.ValidationError(
            {"negative_prompt": f"Model '{spec.id}' does not use a negative prompt."}
        )


def _resolve_size(spec: ModelSpec, attrs: dict) -> tuple[int, int]:
    size = attrs.get("size")
    width, height = attrs.get("width"), attrs.get("height")
    if (width is None) != (height is None):
        missing = "height" if height is None else "width"
        raise serializers.ValidationError({missing: "Give 'width' and 'height' together."})
    if width is not None:
        param = "width"
        if size not in (None, "auto") and SIZE_RE.match(size) and _parse(size) != (width, height):
            raise serializers.ValidationError(
                {"size": f"'size' {size} disagrees with width={width}, height={height}."}
            )
    elif size in (None, "", "auto"):
        return spec.default_size
    else:
        param = "size"
        if not SIZE_RE.match(size):
            raise serializers.ValidationError(
                {"size": f"'{size}' is not a size: use 'WIDTHxHEIGHT' (e.g. '512x512') or 'auto'."}
            )
        width, height = _parse(size)
    label = f"{width}x{height}"
    if spec.allowed_sizes and label not in spec.allowed_sizes:
        raise serializers.ValidationError(
            {
                param: f"Model '{spec.id}' supports the sizes "
                f"{', '.join(spec.allowed_sizes)}; got {label}."
            }
        )
    for name, value in (("width", width), ("height", height)):
        if not spec.min_size <= value <= spec.max_size:
            raise serializers.ValidationError(
                {
                    param: f"The {name} {value} is outside {spec.min_size}-{spec.max_size} "
                    f"pixels for model '{spec.id}'."
                }
            )
        if value % spec.size_multiple:
            raise serializers.ValidationError(
                {
                    param: f"The {name} {value} must be a multiple of {spec.size_multiple} "
                    f"for model '{spec.id}'."
                }
            )
    if width * height > spec.max_pixels:
        raise serializers.ValidationError(
            {
                param: f"{label} is {width * height} pixels; model '{spec.id}' allows at most "
                f"{spec.max_pixels}."
            }
        )
    return width, height


def _parse(size: str) -> tuple[int, int]:
    match = SIZE_RE.match(size)
    return int(match.group(1)), int(match.group(2))


def _resolve_steps(spec: ModelSpec, attrs: dict) -> tuple[int, str]:
    quality = attrs.get("quality") or "auto"
    explicit = attrs.get("num_inference_steps")
    alias = attrs.get("num_steps")
    if explicit is not None and alias is not None and explicit != alias:
        raise serializers.ValidationError(
            {"num_steps": "'num_steps' is an alias of 'num_inference_steps'; they disagree."}
        )
    steps = explicit if explicit is not None else alias
    param = "num_inference_steps" if explicit is not None else "num_steps"
    if steps is None:
        return spec.steps_for(quality), quality
    if steps > spec.max_steps:
        raise serializers.ValidationError(
            {param: f"Model '{spec.id}' runs at most {spec.max_steps} steps; got {steps}."}
        )
    return steps, quality
