"""The policy file: validation (a bad file stops start-up with a clear message), whole-word,
case- and accent-insensitive terms, patterns, `moderation: low`, the built-in category no
operator can relax, and the classifiers' thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from PIL import Image

from generations.moderation import classifiers
from generations.moderation.policy import MINORS, PolicyError, load, parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

POLICY = {
    "categories": {
        "violence": {"terms": ["gore", "blood bath", "Décapitation"], "relaxed_by_low": True},
        "weapons": {"patterns": [r"\b(ak|m)-?\d{2}\b"]},
    }
}


def test_terms_match_whole_words_case_and_accent_insensitively():
    policy = parse(POLICY)
    assert policy.text_categories(["A scene of GORE"], "auto") == ["violence"]
    assert policy.text_categories(["a blood\n  BATH"], "auto") == ["violence"]
    # Accents on either side: the term has one, the text not, and the other way round.
    assert policy.text_categories(["decapitation at dawn"], "auto") == ["violence"]
    assert policy.text_categories(["gôre"], "auto") == ["violence"]
    # Whole words only: no match inside another word.
    assert policy.text_categories(["Al Gore's gorgeous bloodbath"], "auto") == ["violence"]
    assert policy.text_categories(["gorgeous bloodbath, gored"], "auto") == []
    # The negative prompt is checked like the prompt.
    assert policy.text_categories(["a calm lake", "gore"], "auto") == ["violence"]


def test_patterns_are_regular_expressions_searched_without_case():
    policy = parse(POLICY)
    assert policy.text_categories(["soldier with an AK-47"], "auto") == ["weapons"]
    assert policy.text_categories(["an M16"], "auto") == ["weapons"]
    assert policy.text_categories(["a mall"], "auto") == []


def test_low_skips_relaxed_categories_only():
    policy = parse(POLICY)
    assert policy.text_categories(["gore"], "low") == []
    assert policy.text_categories(["gore with an ak47"], "low") == ["weapons"]
    assert policy.text_categories(["gore with an ak47"], "auto") == ["violence", "weapons"]


def test_the_builtin_category_is_in_every_policy_and_never_relaxed():
    policy = parse({})
    for text in ("a naked child", "Nude 12-year-old", "loli art", "sexy schoolgirl"):
        assert policy.text_categories([text], "low") == [MINORS], text
    for text in ("a child flying a kite", "a nude statue in a museum", "kids at school"):
        assert policy.text_categories([text], "auto") == [], text
    # An operator may add to it ...
    extended = parse({"categories": {MINORS: {"terms": ["forbiddenword"]}}})
    assert extended.text_categories(["FORBIDDENWORD"], "low") == [MINORS]
    assert extended.text_categories(["a naked child"], "auto") == [MINORS]
    # ... never relax it.
    with pytest.raises(PolicyError, match="can never be relaxed"):
        parse({"categories": {MINORS: {"terms": ["x"], "relaxed_by_low": True}}})


@pytest.mark.parametrize(
    "data, problem",
    [
        ([], "top level: must be a JSON object"),
        ({"categorys": {}}, "unknown field(s) ['categorys']"),
        ({"categories": {"v": {"terms": "gore"}}}, "categories.v.terms: must be a list"),
        ({"categories": {"v": {"patterns": ["(unclosed"]}}}, "categories.v.patterns[0]: not a"),
        ({"categories": {"v": {"relaxed_by_low": "yes"}}}, "relaxed_by_low: must be true or"),
        ({"text_classifier": {"source": "/nonexistent", "labels": {"x": "y"}}}, "no model there"),
    ],
)
def test_a_bad_policy_says_what_and_where(data, problem, tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ImproperlyConfigured) as raised:
        load(str(path))
    assert str(raised.value).startswith(f"IMAGEHUB_MODERATION_POLICY={path}: ")
    assert problem in str(raised.value)


def test_classifier_labels_and_threshold_are_checked(demo_classifiers):
    source = str(demo_classifiers["text"])
    with pytest.raises(
        PolicyError, match=r"has no label\(s\) \['toxic'\]; it has \['safe', 'unsafe'\]"
    ):
        parse({"text_classifier": {"source": source, "labels": {"toxic": "hate"}}})
    with pytest.raises(PolicyError, match="threshold: must be from 0 to 1, got 2"):
        parse({"text_classifier": {"source": source, "labels": {"unsafe": "hate"}, "threshold": 2}})
    # A category only a classifier names exists, and is not relaxed by low.
    policy = parse({"text_classifier": {"source": source, "labels": {"unsafe": "hate"}}})
    assert "hate" in policy.categories and policy.applies("hate", "low")


def test_a_bad_policy_file_stops_start_up(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text('{"categories": {"violence": {"patterns": ["[a-"]}}}')
    env = {**os.environ, "IMAGEHUB_MODERATION_POLICY": str(path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert f"IMAGEHUB_MODERATION_POLICY={path}: categories.violence.patterns[0]: not a regular " \
        "expression" in done.stderr  # fmt: skip


def test_thresholds_zero_flags_everything_and_one_nothing(demo_classifiers):
    texts = ["a lighthouse", "a cat in the forest", "zzz"]
    images = [Image.new("RGB", (64, 64), color) for color in ("red", "navy", "white")]
    for threshold, expected in ((0, {"violence"}), (1, set())):
        policy = parse(
            {
                "text_classifier": {
                    "source": str(demo_classifiers["text"]),
                    "labels": {"safe": "violence", "unsafe": "violence"},
                    "threshold": threshold,
                },
                "image_classifier": {
                    "source": str(demo_classifiers["image"]),
                    "labels": {"safe": "violence", "unsafe": "violence"},
                    "threshold": threshold,
                },
            }
        )
        for text in texts:
            assert classifiers.input_categories(policy, [text], [], "auto") == expected
        assert classifiers.flagged_images(policy, images, "auto") == [expected] * 3


LAZY = r"""
import json, sys
import django
django.setup()
from generations.catalog import get_model
from generations.moderation.checks import current, input_check
from generations.types import GenerationRequest

def heavy():
    return sorted(m for m in ("torch", "transformers") if m in sys.modules)

seen = {"started": heavy()}
current()
seen["policy validated"] = heavy()
order = GenerationRequest(
    spec=get_model("demo-sd"), prompt="a lighthouse", negative_prompt="", n=1, width=64,
    height=64, steps=2, guidance_scale=5.0, quality="auto", response_format="b64_json",
    output_format="png",
)
input_check(order=order, organization=None)
seen["request checked"] = heavy()
print(json.dumps(seen))
"""


@pytest.mark.parametrize("with_classifier", [False, True])
def test_transformers_is_loaded_only_when_a_classifier_is_used(
    with_classifier, demo_classifiers, tmp_path
):
    data = dict(POLICY)
    if with_classifier:
        text = {"source": str(demo_classifiers["text"]), "labels": {"unsafe": "hate"}}
        data["text_classifier"] = {**text, "threshold": 1}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data))
    env = {**os.environ, "IMAGEHUB_MODERATION_POLICY": str(path)}
    env["DJANGO_SETTINGS_MODULE"] = "imagehub.settings"
    done = subprocess.run(
        [sys.executable, "-c", LAZY], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["started"] == [] and seen["policy validated"] == []
    expected = ["torch", "transformers"] if with_classifier else []
    assert seen["request checked"] == expected
