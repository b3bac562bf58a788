"""Moderation as a client sees it, on the embedded default (in-process worker): the input
stage (400 moderation_blocked, nothing held), the output stage (flagged images withheld
and not charged; none left: failed, hold released, in every answer mode), partial images
that never leak a flagged image, `moderation: low`, the stricter organization, and
nothing at all without a policy."""

from __future__ import annotations

import base64
import io
import json

import pytest
from imagefiles import gradient_png, upload
from PIL import Image

from accounts.models import CreditEntry, Organization
from accounts.webhooks import endpoints
from accounts.webhooks.models import WebhookDelivery
from generations import previews
from generations.models import Generation, ModerationBlock
from generations.moderation import classifiers
from generations.moderation.policy import parse
from tests.generations.test_streaming import events as stream_events

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"
BODY = {"prompt": "a lighthouse", "size": "64x64", "num_inference_steps": 2, "seed": 3}
TERMS = {
    "categories": {
        "violence": {"terms": ["gore"], "relaxed_by_low": True},
        "weapons": {"patterns": [r"\bak-?47\b"]},
    }
}


def image_policy(demo_classifiers, threshold: float, **extra) -> dict:
    return {
        **extra,
        "image_classifier": {
            "source": str(demo_classifiers["image"]),
            "labels": {"unsafe": "sexual"},
            "threshold": threshold,
        },
    }


def money(tenant) -> tuple[int, int]:
    org = Organization.objects.get(pk=tenant.org.pk)
    return org.credit_balance, org.credits_held


def assert_blocked(response, stage: str, categories: list[str]) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "image_generation_user_error"
    assert error["code"] == "moderation_blocked"
    assert error["message"].endswith(f"safety_violations=[{', '.join(categories)}]")
    assert error["moderation_details"] == {"moderation_stage": stage, "categories": categories}
    return error


# --- input stage -------------------------------------------------------------------------


def test_input_block_is_openais_400_and_costs_nothing(api, tenant, policy):
    policy(TERMS)
    before = money(tenant)
    entries = CreditEntry.objects.count()
    response = api.post(URL, {**BODY, "prompt": "GORE with an AK-47"}, format="json")
    assert_blocked(response, "input", ["violence", "weapons"])
    # Nothing held, nothing recorded as a generation, no ledger entry.
    assert money(tenant) == before
    assert CreditEntry.objects.count() == entries
    assert not Generation.objects.exists()
    [block] = ModerationBlock.objects.all()
    assert (block.stage, block.categories, block.api_key_id) == (
        "input",
        ["violence", "weapons"],
        tenant.key.pk,
    )
    assert block.prompt == "GORE with an AK-47" and block.generation_id == ""


def test_the_negative_prompt_is_checked_too(api, policy):
    policy(TERMS)
    response = api.post(URL, {**BODY, "negative_prompt": "gore"}, format="json")
    assert_blocked(response, "input", ["violence"])


def test_low_skips_the_relaxed_categories_and_a_strict_org_does_not(api, tenant, policy):
    policy(TERMS)
    asynchronous = {"HTTP_PREFER": "respond-async"}
    relaxed = api.post(URL, {**BODY, "prompt": "gore", "moderation": "low"}, format="json")
    assert relaxed.status_code == 200, relaxed.content
    assert Generation.objects.get(pk=relaxed.json()["id"]).params["moderation"] == "low"
    # `low` never relaxes a category the operator did not mark.
    weapons = api.post(URL, {**BODY, "prompt": "ak47", "moderation": "low"}, format="json")
    assert_blocked(weapons, "input", ["weapons"])
    Organization.objects.filter(pk=tenant.org.pk).update(moderation_strict=True)
    strict = api.post(
        URL, {**BODY, "prompt": "gore", "moderation": "low"}, format="json", **asynchronous
    )
    assert_blocked(strict, "input", ["violence"])
    assert ModerationBlock.objects.filter(moderation="auto").count() == 1


def test_moderation_takes_only_auto_or_low(api, policy):
    policy(TERMS)
    response = api.post(URL, {**BODY, "moderation": "off"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == "moderation"


def test_the_text_classifier_runs_before_anything_is_held(api, tenant, policy, demo_classifiers):
    text = {"source": str(demo_classifiers["text"]), "labels": {"unsafe": "hate"}}
    policy({"text_classifier": {**text, "threshold": 0}})
    before = money(tenant)
    assert_blocked(api.post(URL, BODY, format="json"), "input", ["hate"])
    assert money(tenant) == before
    policy({"text_classifier": {**text, "threshold": 1}})
    assert api.post(URL, BODY, format="json").status_code == 200


def test_input_images_of_edits_and_variations_are_checked(api, tenant, policy, demo_classifiers):
    policy(image_policy(demo_classifiers, 0))
    before = money(tenant)
    edit = api.post(
        "/v1/images/edits",
        {"image": upload(gradient_png((64, 64))), "prompt": "purple sky", "size": "64x64"},
        format="multipart",
    )
    assert_blocked(edit, "input", ["sexual"])
    variation = api.post(
        "/v1/images/variations", {"image": upload(gradient_png((64, 64)))}, format="multipart"
    )
    assert_blocked(variation, "input", ["sexual"])
    assert money(tenant) == before and not Generation.objects.exists()
    assert list(ModerationBlock.objects.values_list("kind", flat=True).order_by("pk")) == [
        "edit",
        "variation",
    ]


# --- output stage ------------------------------------------------------------------------


def unsafe_scores(demo_classifiers, items) -> list[float]:
    probe = parse(image_policy(demo_classifiers, 0.5))
    images = [Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) for item in items]
    return [
        next(s["score"] for s in scores if s["label"] == "unsafe")
        for scores in classifiers.image_scores(probe.image_classifier, images)
    ]


def test_a_flagged_image_is_withheld_and_not_charged(api, tenant, policy, demo_classifiers):
    body = {**BODY, "n": 2}
    plain = api.post(URL, body, format="json").json()
    low, high = unsafe_scores(demo_classifiers, plain["data"])
    assert low != high  # random weights: two different images score differently
    # A threshold between the two scores flags exactly one of them.
    policy(image_policy(demo_classifiers, (low + high) / 2))
    before = money(tenant)
    response = api.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    payload = response.json()
    kept = 0 if low < high else 1
    assert [item["seed"] for item in payload["data"]] == [plain["data"][kept]["seed"]]
    assert payload["data"][0]["b64_json"] == plain["data"][kept]["b64_json"]
    assert payload["moderation_details"]["images_withheld"] == 1
    assert payload["moderation_details"]["categories"] == ["sexual"]
    generation = Generation.objects.get(pk=payload["id"])
    assert generation.charged == generation.unit_price  # one image of two
    assert money(tenant) == (before[0] - generation.unit_price, 0)
    assert payload["usage"]["credits_charged"] == generation.unit_price
    [block] = ModerationBlock.objects.all()
    assert (block.stage, block.generation_id, block.withheld, block.delivered) == (
        "output",
        generation.id,
        1,
        1,
    )


def test_none_left_fails_with_the_400_and_releases_the_hold(api, tenant, policy, demo_classifiers):
    policy(image_policy(demo_classifiers, 0))
    before = money(tenant)
    response = api.post(URL, {**BODY, "n": 2}, format="json")
    error = assert_blocked(response, "output", ["sexual"])
    generation = Generation.objects.get(pk=error["generation_id"])
    assert (generation.status, generation.error_code) == ("failed", "moderation_blocked")
    assert generation.charged == 0 and not generation.images.exists()
    assert money(tenant) == before
    # The polled generation says the same.
    polled = api.get(f"{URL}/{generation.id}").json()
    assert polled["status"] == "failed"
    assert polled["error"]["code"] == "moderation_blocked"
    assert polled["error"]["moderation_details"] == {
        "moderation_stage": "output",
        "categories": ["sexual"],
    }


def test_a_webhook_reports_generation_failed_with_the_code(api, tenant, policy, demo_classifiers):
    policy(image_policy(demo_classifiers, 0))
    endpoints.webhook_endpoint_set(organization=tenant.org)
    response = api.post(
        URL,
        {**BODY, "webhook": "https://hooks.example.com/x", "webhook_events": ["failed"]},
        format="json",
    )
    assert response.status_code == 400
    [delivery] = WebhookDelivery.objects.filter(event="failed")
    payload = json.loads(delivery.body)
    data = payload["data"]
    assert payload["type"] == "image.generation.failed"
    assert data["error"]["code"] == "moderation_blocked"
    assert data["error"]["moderation_details"]["moderation_stage"] == "output"


def test_a_stream_never_sends_a_flagged_partial_image(api, tenant, policy, demo_classifiers):
    policy(image_policy(demo_classifiers, 0))
    before = money(tenant)
    stream = {"size": "128x128", "stream": True, "partial_images": 2, "num_inference_steps": 4}
    response = api.post(URL, {**BODY, **stream}, format="json")
    received = stream_events(response)
    assert [name for name, _ in received] == ["error"]
    error = received[0][1]["error"]
    assert (error["code"], error["type"]) == ("moderation_blocked", "image_generation_user_error")
    assert error["moderation_details"] == {"moderation_stage": "output", "categories": ["sexual"]}
    generation = Generation.objects.get(pk=error["generation_id"])
    assert generation.moderation["partials_withheld"] == 2
    assert money(tenant) == before


def test_previews_are_renumbered_around_a_withheld_one(make_generation):
    """The preview thread stores only allowed previews, numbered without gaps, so the
    stream relays 0, 1, ... and the withheld one is never stored anywhere."""
    from generations.catalog import get_model
    from generations.worker.jobs import _PreviewSaver

    class FlagFirst:
        partials_withheld = 0

        def partial_allowed(self, image):
            allowed = image.getpixel((0, 0)) != (255, 0, 0)
            self.partials_withheld += not allowed
            return allowed

    generation = make_generation(stream=True, partial_images=2)
    saver = _PreviewSaver(generation, get_model("demo-sd"), FlagFirst())
    saver(0, Image.new("RGB", (64, 64), (255, 0, 0)))
    saver(1, Image.new("RGB", (64, 64), (0, 0, 255)))
    saver.wait()
    first = previews.read_preview(generation.id, 0, "png")
    assert Image.open(io.BytesIO(first)).getpixel((0, 0)) == (0, 0, 255)
    assert previews.read_preview(generation.id, 1, "png") is None


def test_a_stream_with_allowed_images_is_unchanged(api, policy, demo_classifiers):
    policy(image_policy(demo_classifiers, 1))
    stream = {"size": "128x128", "stream": True, "partial_images": 2, "num_inference_steps": 4}
    response = api.post(URL, {**BODY, **stream}, format="json")
    names = [name for name, _ in stream_events(response)]
    assert names == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]


# --- off ---------------------------------------------------------------------------------


def test_without_a_policy_nothing_is_checked_or_loaded(api, settings):
    settings.MODERATION_POLICY_FILE = ""
    loaded = classifiers.loaded()
    response = api.post(URL, {**BODY, "prompt": "gore and a naked child"}, format="json")
    assert response.status_code == 200
    assert "moderation_details" not in response.json()
    assert classifiers.loaded() == loaded and not ModerationBlock.objects.exists()


def test_a_redelivered_job_does_not_make_withheld_images_again(make_generation, tenant):
    """The worker died after withholding image 1 and before completing: the job run again
    makes only what is missing, and charges only what it delivers."""
    from generations.worker.jobs import run_generation

    verdict = {"moderation_stage": "output", "categories": ["sexual"], "withheld": [1]}
    generation = make_generation(n=2)
    Generation.objects.filter(pk=generation.pk).update(moderation=verdict)
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded"
    assert list(generation.images.values_list("index", flat=True)) == [0]
    assert generation.charged == generation.unit_price
    everything = make_generation(n=2)
    Generation.objects.filter(pk=everything.pk).update(moderation={**verdict, "withheld": [0, 1]})
    before = money(tenant)
    run_generation(generation_id=everything.id)
    everything.refresh_from_db()
    assert (everything.status, everything.error_code) == ("failed", "moderation_blocked")
    # The hold goes back to the balance, whole.
    released = (before[0] + everything.price, before[1] - everything.price)
    assert everything.charged == 0 and money(tenant) == released
