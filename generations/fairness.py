"""Fair share of a shared queue between organizations.

Every broker message names one job, but the worker that receives it claims the job the
policy picks among the queued jobs of that message's queue (each job still has its own
message, so every job is claimed by some message; a spare one claims nothing). The
policy, per queue:

1. the highest `queue_priority` tier with queued work goes first;
2. within a tier, the organization that has been served least for its weight: jobs it
   has running, plus jobs it started in the last IMAGEHUB_FAIR_SHARE_WINDOW_SECONDS,
   divided by its `queue_weight` (weighted round-robin, with memory);
3. ties go to the organization whose oldest queued job waited longest, and within an
   organization jobs run oldest first (the job a message names, when its organization is
   the pick: messages arrive in order).

So a tenant with 500 queued jobs delays another tenant's single request by at most the
jobs already claimed, about one batch. Batching still groups compatible jobs: a batch
forms from the jobs the worker's threads claimed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from generations.models import Generation


@dataclass(frozen=True)
class Share:
    organization_id: int
    priority: int
    weight: int
    queued: int
    oldest: datetime
    served: int

    def order(self) -> tuple:
        return (-self.priority, self.served / self.weight, self.oldest)


def shares(models: list[str], now: datetime | None = None) -> list[Share]:
    """The organizations with queued jobs on these models, best served first."""
    now = now or timezone.now()
    waiting = (
        Generation.objects.filter(status=Generation.Status.QUEUED, model__in=models)
        .values("organization_id", "organization__queue_priority", "organization__queue_weight")
        .annotate(queued=Count("id"), oldest=Min("created_at"))
    )
    rows = list(waiting)
    if not rows:
        return []
    since = now - timedelta(seconds=settings.FAIR_SHARE_WINDOW_SECONDS)
    served = dict(
        Generation.objects.filter(
            model__in=models, organization_id__in=[r["organization_id"] for r in rows]
        )
        .filter(Q(status=Generation.Status.RUNNING) | Q(started_at__gte=since))
        .values_list("organization_id")
        .annotate(n=Count("id"))
    )
    found = [
        Share(
            organization_id=r["organization_id"],
            priority=r["organization__queue_priority"],
            weight=max(1, r["organization__queue_weight"]),
            queued=r["queued"],
            oldest=r["oldest"],
            served=served.get(r["organization_id"], 0),
        )
        for r in rows
    ]
    return sorted(found, key=Share.order)


def next_organization(models: list[str], prefer: int | None = None) -> int | None:
    """The organization whose job goes next; `prefer` wins a tie with the best."""
    ranked = shares(models)
    if not ranked:
        return None
    best = ranked[0]
    for share in ranked:
        if share.organization_id == prefer and share.order()[:2] == best.order()[:2]:
            return prefer
    return best.organization_id


def queue_position(generation: Generation, ranked: list[Share] | None = None) -> int:
    """Jobs expected to start before this queued one, under the policy above: the ones
    ahead of it in its organization, and from each other organization as many as a
    weighted round-robin serves meanwhile (all of a higher tier's, none of a lower's)."""
    from generations.catalog import models_on_queue, queue_of

    models = models_on_queue(queue_of(generation.model))
    ranked = shares(models) if ranked is None else ranked
    own = next((s for s in ranked if s.organization_id == generation.organization_id), None)
    if own is None:
        return 0
    ahead_in_own = Generation.objects.filter(
        status=Generation.Status.QUEUED,
        model__in=models,
        organization_id=generation.organization_id,
        created_at__lt=generation.created_at,
    ).count()
    rounds = ahead_in_own + 1
    ahead = ahead_in_own
    for share in ranked:
        if share.organization_id == own.organization_id or share.priority < own.priority:
            continue
        if share.priority > own.priority:
            ahead += share.queued
        else:
            ahead += min(share.queued, math.ceil(rounds * share.weight / own.weight))
    return ahead
