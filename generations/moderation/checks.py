"""The two stages of the operator's content policy and the error a block is.

- **input** (the web process, generations.services.generation_create, before anything is
  held): the prompt, the negative prompt (terms, patterns, the text classifier) and the
  input images of edits and variations (the image classifier). A hit is recorded and
  answered with OpenAI's 400 `moderation_blocked`; nothing is held or charged.
- **output** (the worker, generations/worker/jobs.py): every generated image and every
  partial image, with the image classifier, before it is stored or streamed. A flagged
  image is withheld and not charged; with none left the generation fails
  `moderation_blocked` and its hold is released.

The current policy is read once per process (and again only if the setting changes);
without IMAGEHUB_MODERATION_POLICY both stages return at once.
"""

from __future__ import annotations

import threading

from django.conf import settings

from generations.models import Generation
from generations.moderation import classifiers, records
from generations.moderation.policy import AUTO, LEVELS, LOW, Policy, load
from imagehub.errors import APIError

BLOCKED = "moderation_blocked"
_state: dict[str, object] = {"path": None, "policy": None}
_state_lock = threading.Lock()


def current() -> Policy | None:
    """The policy IMAGEHUB_MODERATION_POLICY names (validated), or None when unset."""
    path = settings.MODERATION_POLICY_FILE or ""
    if _state["path"] != path:
        with _state_lock:
            if _state["path"] != path:
                _state["policy"] = load(path) if path else None
                _state["path"] = path
    return _state["policy"]  # type: ignore[return-value]


def effective_level(requested: str | None, organization) -> str:
    """`auto` unless the request asks for `low` and its organization allows it: an
    organization can only make the policy stricter."""
    level = requested if requested in LEVELS else AUTO
    if level == LOW and organization is not None and organization.moderation_strict:
        return AUTO
    return level


def message(categories: list[str]) -> str:
    return (
        "Your request was rejected by the safety system of this server (the operator's "
        "content policy). If you believe this is an error, contact the operator. "
        f"safety_violations=[{', '.join(sorted(categories))}]"
    )


class ModerationBlocked(APIError):
    """OpenAI's refusal: 400, image_generation_user_error, moderation_blocked, with
    `moderation_details` in the error object."""

    status = 400
    type = "image_generation_user_error"
    code = BLOCKED

    def __init__(self, stage: str, categories: list[str], **kwargs):
        categories = sorted(categories)
        extra = {
            **kwargs.pop("extra", {}),
            "moderation_details": {"moderation_stage": stage, "categories": categories},
        }
        super().__init__(message(categories), extra=extra, **kwargs)


def details_of(generation) -> dict | None:
    """A generation's moderation details for its error object (None if not blocked)."""
    verdict = generation.moderation or {}
    if generation.error_code != BLOCKED:
        return None
    return {
        "moderation_stage": verdict.get("moderation_stage", "output"),
        "categories": verdict.get("categories", []),
    }


def input_check(*, order, organization, api_key=None, user=None) -> None:
    """The input stage: raises ModerationBlocked (after recording the block) if the
    request's texts or input images break the policy. Terms and patterns first: a hit
    there spares the classifiers."""
    policy = current()
    if policy is None:
        return
    level = order.moderation
    texts = [order.prompt, order.negative_prompt]
    found = set(policy.text_categories(texts, level))
    if not found and (policy.text_classifier or (policy.image_classifier and order.images)):
        image_bytes = [image.data for image in order.images]
        found = classifiers.input_categories(policy, texts, image_bytes, level)
    if not found:
        return
    records.block_record(
        stage="input",
        categories=sorted(found),
        organization_id=organization.pk,
        api_key_id=getattr(api_key, "pk", None),
        user_id=getattr(user, "pk", None),
        prompt=order.prompt,
        negative_prompt=order.negative_prompt,
        model=order.spec.id,
        kind=order.kind,
        level=level,
        end_user=order.end_user,
    )
    raise ModerationBlocked("input", sorted(found))


class OutputCheck:
    """The output stage for one generation on the worker: `flagged(images)` gives, per
    image, the categories that withhold it (empty: it may leave). None from `for_` when
    the policy has no image classifier: then nothing is checked and nothing loaded."""

    def __init__(self, policy: Policy, level: str):
        self.policy = policy
        self.level = level
        self.categories: set[str] = set()
        self.partials_withheld = 0

    @classmethod
    def for_(cls, generation) -> OutputCheck | None:
        policy = current()
        if policy is None or policy.image_classifier is None:
            return None
        return cls(policy, (generation.params or {}).get("moderation") or AUTO)

    def flagged(self, images: list) -> list[set[str]]:
        verdicts = classifiers.flagged_images(self.policy, images, self.level)
        for categories in verdicts:
            self.categories |= categories
        return verdicts

    def partial_allowed(self, image) -> bool:
        """A partial image may be streamed (checked in the preview thread)."""
        if self.flagged([image])[0]:
            self.partials_withheld += 1
            return False
        return True


def output_verdict(generation, check: OutputCheck, withheld: list[int], delivered: int) -> None:
    """After the output stage of a run: remember what was withheld on the generation (a
    redelivered job does not make those images again), record the block, and raise
    ModerationBlocked when no image is left to deliver."""
    before = dict(generation.moderation or {})
    all_withheld = sorted(set(before.get("withheld", [])) | set(withheld))
    categories = sorted(set(before.get("categories", [])) | check.categories)
    partials = int(before.get("partials_withheld", 0)) + check.partials_withheld
    if not all_withheld and not partials:
        return
    verdict = {
        "moderation_stage": "output",
        "categories": categories,
        "withheld": all_withheld,
        "partials_withheld": partials,
    }
    Generation.objects.filter(pk=generation.pk).update(moderation=verdict)
    generation.moderation = verdict
    if withheld or check.partials_withheld:
        records.block_record(
            stage="output",
            categories=sorted(check.categories) or categories,
            organization_id=generation.organization_id,
            api_key_id=generation.api_key_id,
            user_id=generation.user_id,
            prompt=generation.prompt,
            negative_prompt=generation.negative_prompt,
            generation_id=generation.id,
            model=generation.model,
            kind=generation.kind,
            level=check.level,
            end_user=generation.end_user,
            withheld=len(withheld),
            delivered=delivered,
        )
    if delivered == 0 and all_withheld:
        raise ModerationBlocked("output", categories)


def withheld_indices(generation) -> set[int]:
    return set((generation.moderation or {}).get("withheld", []))
