"""Which models the workers can load, as they last reported (ModelStatus rows).

Workers report; the web reads. A model is unavailable when every worker that reported on
it lately (within `status_ttl()`) said it cannot load it; a model no worker reported on
is given the benefit of the doubt (its job would fail cleanly with the same 503, free of
charge, and its worker would report). A report older than the TTL counts for nothing:
a worker that stopped does not keep a model marked for ever.
"""

from __future__ import annotations

import datetime as dt
import threading

from django.conf import settings
from django.utils import timezone

from generations.catalog import ModelSpec
from generations.models import ModelStatus
from imagehub.errors import ServiceUnavailable


class ModelUnavailable(ServiceUnavailable):
    code = "model_unavailable"


def status_ttl() -> dt.timedelta:
    return dt.timedelta(seconds=max(3 * settings.MODEL_PROBE_SECONDS, 3600))


def unavailable_reasons() -> dict[str, str]:
    """{model id: the sentence of its latest report} for the models no worker can load."""
    since = timezone.now() - status_ttl()
    rows = ModelStatus.objects.filter(checked_at__gte=since).order_by("checked_at")
    reasons: dict[str, str] = {}
    available: set[str] = set()
    for model, ok, reason in rows.values_list("model", "available", "reason"):
        if ok:
            available.add(model)
        else:
            reasons[model] = reason
    return {model: reason for model, reason in reasons.items() if model not in available}


def model_check_available(spec: ModelSpec) -> None:
    """Refuse (503, nothing held) a model the workers cannot load."""
    reason = unavailable_reasons().get(spec.id)
    if reason is not None:
        raise ModelUnavailable(reason, param="model")


class Reporter:
    """A worker process's reports: written when a model's state changes, and again when
    the last write is half a TTL old (so a live worker's report never expires)."""

    def __init__(self):
        self._last: dict[str, tuple[str | None, dt.datetime]] = {}
        self._lock = threading.Lock()

    def report(self, *, model: str, worker: str, reason: str | None) -> None:
        now = timezone.now()
        with self._lock:
            last = self._last.get(model)
            if last is not None and last[0] == reason and now - last[1] < status_ttl() / 2:
                return
            self._last[model] = (reason, now)
        ModelStatus.objects.update_or_create(
            model=model,
            worker=worker,
            defaults={"available": reason is None, "reason": reason or "", "checked_at": now},
        )

    def warm(self, *, model: str, worker: str) -> None:
        """The worker finished its warm-up run of `model`: it can load it, and is ready."""
        now = timezone.now()
        with self._lock:
            self._last[model] = (None, now)
        ModelStatus.objects.update_or_create(
            model=model,
            worker=worker,
            defaults={"available": True, "reason": "", "checked_at": now, "warm_at": now},
        )

    def forget(self) -> None:
        with self._lock:
            self._last.clear()


def warm_workers(model_ids: list[str]) -> dict[str, int]:
    """{model id: how many workers that reported lately have warmed it up}."""
    since = timezone.now() - status_ttl()
    counts = dict.fromkeys(model_ids, 0)
    rows = ModelStatus.objects.filter(
        model__in=model_ids, checked_at__gte=since, warm_at__isnull=False, available=True
    )
    for model in rows.values_list("model", flat=True):
        counts[model] += 1
    return counts


def model_statuses_prune() -> int:
    """Delete reports of workers long gone (kept a day for the operator to read)."""
    cutoff = timezone.now() - max(status_ttl(), dt.timedelta(days=1))
    deleted, _ = ModelStatus.objects.filter(checked_at__lt=cutoff).delete()
    return deleted
