"""An adapter (LoRA weights for one catalog model) and the operator's surcharges."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from imagehub.storage import images_storage


def new_adapter_id() -> str:
    return f"adp_{secrets.token_hex(12)}"


class Adapter(models.Model):
    """A LoRA of an organization, or of the operator (no organization: shared with all).

    Its file is kept in the images storage (local files or S3) under ``adapters/``; what
    the upload check read from it (rank, target modules, components) is kept beside."""

    class Status(models.TextChoices):
        READY = "ready"
        # A worker could not load the stored file (corrupt, or unreadable by diffusers):
        # requests naming it are refused with the reason.
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40, default=new_adapter_id, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="adapters",
        help_text="empty: the operator's adapter, shared with every organization",
    )
    name = models.CharField(max_length=200)
    base_model = models.CharField(max_length=200, help_text="catalog model id")
    file = models.FileField(storage=images_storage, max_length=300)
    bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # Read from the file at upload.
    layout = models.CharField(max_length=16, help_text="peft (diffusers) or kohya")
    rank = models.PositiveIntegerField()
    target_modules = models.JSONField(default=list)
    components = models.JSONField(default=list)  # "denoiser", "text_encoder", ...
    tensors = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    error_message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="adapter_org_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def shared(self) -> bool:
        return self.organization_id is None


class AdapterPrice(models.Model):
    """The operator's surcharge per image for using an adapter: for one adapter, or for
    every adapter of one catalog model. One adapter's price wins over its model's; with
    neither, IMAGEHUB_ADAPTER_PRICE_PER_IMAGE applies (default 0)."""

    model = models.CharField(
        max_length=200, blank=True, help_text="catalog model id (every adapter on it)"
    )
    adapter = models.OneToOneField(
        Adapter, on_delete=models.CASCADE, null=True, blank=True, related_name="price"
    )
    price_per_image = models.PositiveBigIntegerField(help_text="micro-credits per image")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(model="") & Q(adapter__isnull=False))
                | (~Q(model="") & Q(adapter__isnull=True)),
                name="adapter_price_for_model_or_adapter",
            ),
            models.UniqueConstraint(
                fields=["model"], condition=~Q(model=""), name="one_adapter_price_per_model"
            ),
        ]

    def __str__(self) -> str:
        target = self.adapter_id or f"adapters of {self.model}"
        return f"{target}: +{self.price_per_image}/image"
