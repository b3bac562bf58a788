"""What a client asks for, as the API hands it to generation_create (typed, validated,
not yet priced: pricing is the service's business)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from generations.catalog import ModelSpec


class InputImage(Protocol):
    """An uploaded image of an edit or variation, as checked by the API."""

    data: bytes
    width: int
    height: int

    @property
    def content_type(self) -> str: ...

    @property
    def extension(self) -> str: ...


@dataclass(frozen=True)
class GenerationRequest:
    spec: ModelSpec
    prompt: str
    negative_prompt: str
    n: int
    width: int
    height: int
    steps: int
    guidance_scale: float
    quality: str
    response_format: str
    output_format: str
    output_compression: int | None = None
    # None: the service draws one and records it, so any image can be reproduced.
    seed: int | None = None
    end_user: str = ""  # OpenAI's `user`
    style: str | None = None
    stream: bool = False
    partial_images: int = 0
    # Edits and variations.
    kind: str = "generation"
    # An edit the model runs as an instruction on its reference images (no strength).
    instruction: bool = False
    strength: float | None = None
    images: tuple[InputImage, ...] = ()
    mask: Any = None  # PIL 'L' image at the size of the first input, white = repaint
    input_image_tokens: int = 0
    # Webhooks (accounts/webhooks/): this request's URL (empty: the organization's
    # default, if any) and the events it wants (empty: the endpoint's, else all).
    webhook: str = ""
    webhook_events: tuple[str, ...] = ()
    # OpenAI's `moderation`, as applied: `auto` or `low` (an organization that asks for
    # strict moderation turns `low` into `auto`; generations/moderation/checks.py).
    moderation: str = "auto"
    # LoRA adapters, resolved for the caller's organization (generations/adapters/
    # requests.py): ({"id", "name", "scale"}, …); the service adds each one's surcharge.
    loras: tuple[dict, ...] = ()
    # Extra fields a caller wants recorded in `params` (e.g. the Idempotency-Key digest).
    extra: dict = field(default_factory=dict)

    @property
    def priced_steps(self) -> int:
        """Steps that actually run: image-to-image denoises only int(steps × strength)."""
        if self.strength is None:
            return self.steps
        return min(int(self.steps * self.strength), self.steps)

    def params(self, *, seed: int) -> dict:
        """The whole normalised request, recorded with the generation."""
        recorded = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("spec", "images", "mask", "extra")
        }
        recorded.update(model=self.spec.id, seed=seed, masked=self.mask is not None)
        recorded["loras"] = [dict(lora) for lora in self.loras]
        recorded.update(self.extra)
        return recorded
