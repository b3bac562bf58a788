"""The operator's content policy: the JSON file IMAGEHUB_MODERATION_POLICY names, read and
validated at start-up (generations/apps.py), and the term and pattern matching of texts.

    {"categories": {"<category>": {"terms": ["…"], "patterns": ["<regex>"],
                                   "relaxed_by_low": true}},
     "text_classifier": {"source": "<folder>", "labels": {"<label>": "<category>"},
                         "threshold": 0.8},
     "image_classifier": {...the same...}}

Terms match whole words, case- and accent-insensitively: the text and the terms are both
reduced to lower case without accents (NFKD, combining marks dropped, casefold) and a term
matches where no letter or digit touches it. Patterns are Python regular expressions,
searched case-insensitively in the text as sent and in its reduced form. One category,
sexual content involving minors, is built in: every policy has it, an operator may add
terms and patterns to it but never relax it.

Hand-written rather than a library's: the matching is a few compiled regular expressions
(one alternation per category), which costs microseconds per prompt; no wordlist
library does whole-word, accent-insensitive matching with an operator's own regexes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

AUTO, LOW = "auto", "low"
LEVELS = (AUTO, LOW)
MINORS = "sexual/minors"

# The built-in floor. Alone, these name the abuse itself; the pattern below catches a
# word for a minor and a sexual word anywhere in the same text.
_MINORS_TERMS = (
    "loli", "lolicon", "shota", "shotacon", "jailbait", "csam", "child porn",
    "child pornography", "kiddie porn", "pedo", "pedophile", "paedophile", "pedophilia",
    "paedophilia", "underage sex",
)  # fmt: skip
_MINOR_WORDS = (
    r"child|children|childs?|kids?|minors?|underage|under-age|preteens?|pre-teens?|teens?"
    r"|teenagers?|teenage|toddlers?|infants?|babies|baby|schoolgirls?|schoolboys?"
    r"|little (?:girls?|boys?)|young (?:girls?|boys?)|(?:[1-9]|1[0-7])[- ]?(?:yo|y/o"
    r"|years?[- ]old)"
)
_SEXUAL_WORDS = (
    r"nude|nudes|naked|nudity|sex|sexual|sexy|sexualized|porn|porno|pornographic|explicit"
    r"|nsfw|erotic|erotica|topless|bottomless|undressed|undressing|lingerie|genitals?"
    r"|breasts?|nipples?|seductive|aroused|orgasm\w*|masturbat\w*|intercourse|fetish\w*"
)
_MINORS_PATTERN = (
    rf"(?s)^(?=.*(?<!\w)(?:{_MINOR_WORDS})(?!\w))(?=.*(?<!\w)(?:{_SEXUAL_WORDS})(?!\w))"
)


def normalize(text: str) -> str:
    """Lower case, accents removed ("Édith" -> "edith"), compatibility forms folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _term_regex(terms: tuple[str, ...]) -> re.Pattern | None:
    if not terms:
        return None
    words = sorted({normalize(t).strip() for t in terms if t.strip()}, key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, word.split())) for word in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


@dataclass(frozen=True)
class Category:
    name: str
    terms: tuple[str, ...] = ()
    patterns: tuple[re.Pattern, ...] = ()
    relaxed_by_low: bool = False
    _terms: re.Pattern | None = field(default=None, compare=False, repr=False)

    def matches(self, raw: str, normalized: str) -> bool:
        if self._terms is not None and self._terms.search(normalized):
            return True
        return any(p.search(normalized) or p.search(raw) for p in self.patterns)


@dataclass(frozen=True)
class Classifier:
    """A transformers classification model in a local folder and what its labels mean."""

    kind: str  # "text" or "image"
    source: Path
    labels: dict[str, str]  # model label -> category
    threshold: float
    device: str = "cpu"

    def flags(self, score: float) -> bool:
        """0 flags every mapped label, 1 none (softmax may round to exactly 1.0)."""
        return self.threshold < 1 and score >= self.threshold


@dataclass(frozen=True)
class Policy:
    categories: dict[str, Category]
    text_classifier: Classifier | None = None
    image_classifier: Classifier | None = None
    path: str = ""

    def applies(self, category: str, level: str) -> bool:
        found = self.categories.get(category)
        return not (level == LOW and found is not None and found.relaxed_by_low)

    def text_categories(self, texts: list[str], level: str) -> list[str]:
        """The categories whose terms or patterns match any of the texts."""
        texts = [t for t in texts if t]
        if not texts:
            return []
        reduced = [(t, normalize(t)) for t in texts]
        return [
            name
            for name, category in self.categories.items()
            if self.applies(name, level) and any(category.matches(r, n) for r, n in reduced)
        ]

    def labelled(self, classifier: Classifier, scores: list[dict], level: str) -> set[str]:
        """Categories a classifier's [{label, score}, ...] flags at this level."""
        found = set()
        for item in scores:
            category = classifier.labels.get(str(item["label"]))
            if category and classifier.flags(float(item["score"])):
                if self.applies(category, level):
                    found.add(category)
        return found


class PolicyError(ImproperlyConfigured):
    pass


def _fail(path: str, where: str, problem: str) -> PolicyError:
    return PolicyError(f"IMAGEHUB_MODERATION_POLICY={path}: {where}: {problem}")


def _strings(value: Any, path: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(path, where, "must be a list of non-empty strings")
    return tuple(value)


def _category(name: str, spec: Any, path: str) -> Category:
    where = f"categories.{name}"
    if not isinstance(spec, dict):
        raise _fail(path, where, "must be an object with terms, patterns, relaxed_by_low")
    unknown = set(spec) - {"terms", "patterns", "relaxed_by_low"}
    if unknown:
        raise _fail(path, where, f"unknown field(s) {sorted(unknown)}")
    terms = _strings(spec.get("terms", []), path, f"{where}.terms")
    compiled = []
    for i, pattern in enumerate(_strings(spec.get("patterns", []), path, f"{where}.patterns")):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise _fail(
                path, f"{where}.patterns[{i}]", f"not a regular expression: {exc}"
            ) from None
    relaxed = spec.get("relaxed_by_low", False)
    if not isinstance(relaxed, bool):
        raise _fail(path, f"{where}.relaxed_by_low", "must be true or false")
    if name == MINORS and relaxed:
        raise _fail(path, where, f"'{MINORS}' is built in and can never be relaxed by low")
    return Category(name, terms, tuple(compiled), relaxed, _term_regex(terms))


def _builtin(extra: Category | None) -> Category:
    terms = _MINORS_TERMS + (extra.terms if extra else ())
    patterns = (re.compile(_MINORS_PATTERN),) + (extra.patterns if extra else ())
    return Category(MINORS, terms, patterns, False, _term_regex(terms))


def _model_labels(source: Path, path: str, where: str) -> set[str]:
    config = source / "config.json"
    try:
        labels = json.loads(config.read_text()).get("id2label") or {}
    except OSError as exc:
        raise _fail(path, f"{where}.source", f"no model there ({config}: {exc.strerror})") from None
    except ValueError as exc:
        raise _fail(path, f"{where}.source", f"{config} is not JSON: {exc}") from None
    return {str(label) for label in labels.values()}


def _classifier(kind: str, spec: Any, path: str, base: Path) -> Classifier:
    where = f"{kind}_classifier"
    if not isinstance(spec, dict):
        raise _fail(path, where, "must be an object with source, labels, threshold")
    unknown = set(spec) - {"source", "labels", "threshold", "device"}
    if unknown:
        raise _fail(path, where, f"unknown field(s) {sorted(unknown)}")
    if not isinstance(spec.get("source"), str) or not spec["source"]:
        raise _fail(path, f"{where}.source", "must name a folder")
    source = (base / spec["source"]).resolve()
    labels = spec.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise _fail(path, f"{where}.labels", "must map model labels to categories")
    if not all(isinstance(v, str) and v for v in labels.values()):
        raise _fail(path, f"{where}.labels", "each label must name a category (a string)")
    known = _model_labels(source, path, where)
    missing = sorted(set(labels) - known)
    if missing:
        raise _fail(
            path, f"{where}.labels", f"the model has no label(s) {missing}; it has {sorted(known)}"
        )
    threshold = spec.get("threshold", 0.8)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise _fail(path, f"{where}.threshold", "must be a number from 0 to 1")
    if not 0 <= threshold <= 1:
        raise _fail(path, f"{where}.threshold", f"must be from 0 to 1, got {threshold}")
    device = spec.get("device", "cpu")
    if not isinstance(device, str) or not device:
        raise _fail(path, f"{where}.device", "must be a device name such as 'cpu' or 'cuda'")
    return Classifier(kind, source, dict(labels), float(threshold), device)


def parse(data: Any, *, path: str = "<policy>", base: Path | None = None) -> Policy:
    """A validated Policy from the file's JSON; PolicyError says what is wrong and where."""
    if not isinstance(data, dict):
        raise _fail(path, "top level", "must be a JSON object")
    unknown = set(data) - {"categories", "text_classifier", "image_classifier"}
    if unknown:
        raise _fail(path, "top level", f"unknown field(s) {sorted(unknown)}")
    raw = data.get("categories", {})
    if not isinstance(raw, dict):
        raise _fail(path, "categories", "must be an object of category name -> rules")
    categories = {name: _category(name, spec, path) for name, spec in raw.items()}
    categories[MINORS] = _builtin(categories.get(MINORS))
    base = base or Path.cwd()
    classifiers = {
        kind: _classifier(kind, data[f"{kind}_classifier"], path, base)
        for kind in ("text", "image")
        if data.get(f"{kind}_classifier") is not None
    }
    for classifier in classifiers.values():
        for category in classifier.labels.values():
            # A category only a classifier names: applied at every level.
            categories.setdefault(category, Category(category))
    return Policy(categories, classifiers.get("text"), classifiers.get("image"), path)


def load(path: str) -> Policy:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise _fail(path, "file", f"cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _fail(path, "file", f"is not valid JSON: {exc}") from None
    # Relative classifier folders are relative to the policy file.
    return parse(data, path=path, base=file.resolve().parent)
