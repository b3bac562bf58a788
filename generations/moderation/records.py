"""Abuse handling: every block is recorded; a key blocked more than
IMAGEHUB_MODERATION_SUSPEND_AFTER times within an hour is suspended (accounts/suspension.py
emails the owners); records are purged after IMAGEHUB_MODERATION_RETENTION_DAYS; the
operator dashboard reads blocks per organization and category per day."""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncDay
from django.utils import timezone

from accounts.suspension import api_key_suspend
from generations.moderation.models import ModerationBlock
from imagehub import metrics

logger = logging.getLogger(__name__)


def block_record(
    *,
    stage: str,
    categories: list[str],
    organization_id: int,
    api_key_id: int | None,
    user_id: int | None,
    prompt: str,
    negative_prompt: str = "",
    generation_id: str = "",
    model: str = "",
    kind: str = "generation",
    level: str = "auto",
    end_user: str = "",
    withheld: int = 0,
    delivered: int = 0,
) -> ModerationBlock:
    """Record one block, then suspend its key if it was blocked too often this hour."""
    block = ModerationBlock.objects.create(
        organization_id=organization_id,
        api_key_id=api_key_id,
        user_id=user_id,
        stage=stage,
        categories=sorted(categories),
        generation_id=generation_id,
        model=model,
        kind=kind,
        moderation=level,
        prompt=prompt,
        negative_prompt=negative_prompt,
        end_user=end_user[:256],
        withheld=withheld,
        delivered=delivered,
    )
    for category in categories:
        metrics.MODERATION_BLOCKS.labels(stage, category).inc()
    logger.info(
        "moderation %s block org=%s key=%s categories=%s generation=%s",
        stage,
        organization_id,
        api_key_id,
        ",".join(sorted(categories)),
        generation_id or "-",
    )
    if api_key_id is not None:
        _suspend_if_abusive(api_key_id)
    return block


def _suspend_if_abusive(api_key_id: int) -> None:
    limit = settings.MODERATION_SUSPEND_AFTER
    if not limit:
        return
    since = timezone.now() - timedelta(hours=1)
    recent = ModerationBlock.objects.filter(api_key_id=api_key_id, created_at__gte=since).count()
    if recent > limit:
        api_key_suspend(
            key_id=api_key_id,
            reason=f"{recent} requests blocked by the content policy within an hour "
            f"(more than {limit})",
        )


def blocks_purge_batch(now: datetime, batch_size: int) -> int:
    """Delete up to `batch_size` block records past IMAGEHUB_MODERATION_RETENTION_DAYS."""
    cutoff = now - timedelta(days=settings.MODERATION_RETENTION_DAYS)
    ids = list(
        ModerationBlock.objects.filter(created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    if not ids:
        return 0
    ModerationBlock.objects.filter(pk__in=ids).delete()
    return len(ids)


def block_history(*, start: dt.date, end: dt.date) -> dict:
    """Blocks per day by organization and by category, [start, end), for the operator
    dashboard: {"days": [...], "by_organization": {name: [per day]}, "by_category": ...}."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    index = {day: i for i, day in enumerate(days)}
    since = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    until = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)
    rows = (
        ModerationBlock.objects.filter(created_at__gte=since, created_at__lt=until)
        .annotate(day=TruncDay("created_at", tzinfo=dt.UTC))
        .values("day", "organization__name", "categories")
        .annotate(blocks=Count("pk"))
    )
    by_organization: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    by_category: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    for row in rows:
        day = row["day"].date() if isinstance(row["day"], dt.datetime) else row["day"]
        if day not in index:
            continue
        by_organization[row["organization__name"]][index[day]] += row["blocks"]
        for category in row["categories"] or []:
            by_category[category][index[day]] += row["blocks"]
    return {
        "days": days,
        "by_organization": dict(by_organization),
        "by_category": dict(by_category),
    }
