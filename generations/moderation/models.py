"""The record of every block: what the policy refused, for whom and why (kept
IMAGEHUB_MODERATION_RETENTION_DAYS for review, then purged; generations/moderation/records.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ModerationBlock(models.Model):
    class Stage(models.TextChoices):
        INPUT = "input"
        OUTPUT = "output"

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    stage = models.CharField(max_length=8, choices=Stage.choices)
    categories = models.JSONField(default=list)
    # The generation an output block withheld images of ("" for an input block: nothing
    # was made). Not a foreign key: the record outlives neither nor depends on the row.
    generation_id = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, default="generation")
    moderation = models.CharField(max_length=8, default="auto")  # the level applied
    # For review: what was asked.
    prompt = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True)
    end_user = models.CharField(max_length=256, blank=True)
    # Output stage: images withheld and images delivered (0: the generation failed).
    withheld = models.PositiveSmallIntegerField(default=0)
    delivered = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        app_label = "generations"
        indexes = [
            # The suspension count: a key's blocks of the last hour.
            models.Index(fields=["api_key", "created_at"], name="moderation_key_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.stage} block {', '.join(self.categories)} ({self.created_at:%Y-%m-%d %H:%M})"
