"""A worker's model reports: can this process load each model of its queues?

When the worker starts, and every IMAGEHUB_MODEL_PROBE_SECONDS after, it checks each of
its models without loading it (generations/engine/sources.py: files on disk, the hub's
cache, or the hub reachable). A load that fails while running a job, or the first one
that succeeds, is reported at once. The API reads the reports
(generations/availability.py).
"""

from __future__ import annotations

import logging

from django.conf import settings

from generations.availability import Reporter, model_statuses_prune
from generations.catalog import get_model, models_on_queue
from generations.engine import sources
from generations.worker.liveness import WORKER_NAME, _Loop
from imagehub.db import reconnect

logger = logging.getLogger(__name__)

reporter = Reporter()


def _report(model_id: str, message: str | None) -> None:
    try:
        reporter.report(model=model_id, worker=WORKER_NAME, reason=message)
    except Exception:  # noqa: BLE001 - a report is never worth failing a job over
        logger.warning("could not report the state of model %s", model_id, exc_info=True)


def report_loaded(model_id: str) -> None:
    _report(model_id, None)


def report_warm(model_id: str) -> None:
    try:
        reporter.warm(model=model_id, worker=WORKER_NAME)
    except Exception:  # noqa: BLE001 - a report is never worth failing a worker over
        logger.warning("could not report model %s warm", model_id, exc_info=True)


def report_failed(model_id: str, message: str) -> None:
    _report(model_id, message)


def probe_models(model_ids: list[str]) -> dict[str, str | None]:
    """Check and report each model; returns {model id: None or why it cannot load}."""
    found: dict[str, str | None] = {}
    for model_id in model_ids:
        spec = get_model(model_id)
        if spec is None:
            continue
        reason = sources.probe(spec).reason
        message = None if reason is None else sources.unavailable(spec.id, reason)
        reporter.report(model=spec.id, worker=WORKER_NAME, reason=message)
        found[spec.id] = message
    return found


class ModelProbe(_Loop):
    name = "imagehub-model-probe"

    def __init__(self):
        super().__init__()
        self.queues: list[str] = []
        self._previous: dict[str, str | None] = {}

    def interval(self) -> float:
        return settings.MODEL_PROBE_SECONDS

    def start_for(self, queues: list[str]) -> None:
        """Check now and then periodically (nothing when IMAGEHUB_MODEL_PROBE_SECONDS=0)."""
        if settings.MODEL_PROBE_SECONDS <= 0:
            return
        self.queues = list(queues)
        self.start()

    def _run(self) -> None:
        self._pass()
        super()._run()

    def tick(self) -> None:
        self._pass()

    def _pass(self) -> None:
        try:
            models = [m for queue in self.queues for m in models_on_queue(queue)]
            results = probe_models(list(dict.fromkeys(models)))
            model_statuses_prune()
        except Exception:  # noqa: BLE001 - a failed check must not stop the loop
            logger.warning("model check failed; trying again later", exc_info=True)
            reconnect()
            return
        if results == self._previous:
            return  # said already
        self._previous = results
        ok = [m for m, reason in results.items() if reason is None]
        logger.info("model check: loadable here: %s", ", ".join(ok) or "none")
        for reason in results.values():
            if reason is not None:
                logger.warning("model check: %s", reason)


model_probe = ModelProbe()
