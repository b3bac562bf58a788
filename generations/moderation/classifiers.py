"""The policy's optional classifiers: transformers text- and image-classification
pipelines loaded from local folders, once per process, on first use.

transformers (and with it torch) is imported here only when a policy names a classifier
and a request needs it: a web process without one never loads either
(tests/test_web_process.py). In the web process the classifiers run in a small thread
pool of their own (IMAGEHUB_MODERATION_CLASSIFIER_THREADS), never on the event loop and
at most that many at once; on the worker they run in the job's own thread.
"""

from __future__ import annotations

import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from generations.moderation.policy import Classifier, Policy

logger = logging.getLogger(__name__)

_TASKS = {"text": "text-classification", "image": "image-classification"}
_loaded: dict[tuple, object] = {}
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def pipeline_of(classifier: Classifier):
    """The loaded pipeline (loaded once per process; concurrent first calls wait)."""
    key = (classifier.kind, str(classifier.source), classifier.device)
    found = _loaded.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _loaded:
            from transformers import pipeline  # lazy: only with a classifier in the policy

            logger.info("loading the %s classifier from %s", classifier.kind, classifier.source)
            _loaded[key] = pipeline(
                _TASKS[classifier.kind], model=str(classifier.source), device=classifier.device
            )
        return _loaded[key]


def loaded() -> list[tuple]:
    """Which classifiers this process has loaded (kind, source, device)."""
    return list(_loaded)


def _as_lists(result, count: int) -> list[list[dict]]:
    # One input gives [{label, score}, ...]; several give one such list per input.
    if count == 1 and result and isinstance(result[0], dict):
        return [result]
    return [list(r) for r in result]


def text_scores(classifier: Classifier, texts: list[str]) -> list[list[dict]]:
    pipe = pipeline_of(classifier)
    return _as_lists(pipe(texts, top_k=None, truncation=True), len(texts))


def image_scores(classifier: Classifier, images: list) -> list[list[dict]]:
    pipe = pipeline_of(classifier)
    rgb = [image.convert("RGB") for image in images]
    return _as_lists(pipe(rgb, top_k=None), len(rgb))


def flagged_images(policy: Policy, images: list, level: str) -> list[set[str]]:
    """Per image, the categories the image classifier flags (empty: allowed)."""
    classifier = policy.image_classifier
    if classifier is None or not images:
        return [set() for _ in images]
    return [policy.labelled(classifier, s, level) for s in image_scores(classifier, images)]


def input_categories(policy: Policy, texts: list[str], image_bytes: list[bytes], level: str):
    """The classifiers' verdict on a request's texts and input images, computed in the
    pool (a web request thread waits for it)."""
    return _executor().submit(_input_categories, policy, texts, image_bytes, level).result()


def _input_categories(policy: Policy, texts, image_bytes, level) -> set[str]:
    found: set[str] = set()
    texts = [t for t in texts if t]
    if policy.text_classifier is not None and texts:
        for scores in text_scores(policy.text_classifier, texts):
            found |= policy.labelled(policy.text_classifier, scores, level)
    if policy.image_classifier is not None and image_bytes:
        from PIL import Image

        images = [Image.open(io.BytesIO(data)) for data in image_bytes]
        for categories in flagged_images(policy, images, level):
            found |= categories
    return found


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(
                    max_workers=settings.MODERATION_CLASSIFIER_THREADS,
                    thread_name_prefix="imagehub-moderation",
                )
    return _pool
