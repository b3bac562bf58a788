"""Generation records and the files they produced."""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.db import models
from django.utils import timezone

from imagehub.storage import images_storage


def new_generation_id() -> str:
    """Time-ordered and unguessable: 12 hex digits of milliseconds + 64 random bits."""
    return f"gen_{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


# Jobs the recovery loop had to touch: taken over from a dead worker, sent again, or
# failed with their worker lost.
INCIDENTS = (
    models.Q(recoveries__gt=0) | models.Q(dispatches__gt=1) | models.Q(error_code="worker_lost")
)


class Generation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)
    ACTIVE = (Status.QUEUED, Status.RUNNING)

    id = models.CharField(
        primary_key=True, max_length=40, default=new_generation_id, editable=False
    )
    # Not indexed alone: (organization, -created_at) below serves every lookup by tenant.
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.CASCADE,
        related_name="generations",
        db_index=False,
    )
    api_key = models.ForeignKey(
        "accounts.APIKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="generations",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="generations",
    )
    # OpenAI's `user`: the caller's own end-user id, opaque to us.
    end_user = models.CharField(max_length=256, blank=True)
    kind = models.CharField(max_length=16, default="generation")
    model = models.CharField(max_length=200)
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    n = models.PositiveSmallIntegerField(default=1)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    steps = models.PositiveIntegerField()
    guidance_scale = models.FloatField()
    seed = models.BigIntegerField()
    quality = models.CharField(max_length=16, default="auto")
    response_format = models.CharField(max_length=16, default="b64_json")
    output_format = models.CharField(max_length=8, default="png")
    output_compression = models.PositiveSmallIntegerField(null=True, blank=True)
    # The whole normalised request, for the record and for replays.
    params = models.JSONField(default=dict)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # Claims so far (a job taken over from a dead worker is claimed again).
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    # Renewed every few seconds by the worker running the job; a job whose heartbeat
    # stopped is taken over (generations/worker/liveness.py).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The outbox: when a still-queued job's message is sent again (it may have been lost
    # by the broker, or never sent because the broker was down), and how often it was.
    redispatch_at = models.DateTimeField(null=True, blank=True)
    dispatches = models.PositiveSmallIntegerField(default=0)
    # Times the recovery loop took the job over from a dead worker.
    recoveries = models.PositiveSmallIntegerField(default=0)
    # Set by a cancel request while the job runs; the worker stops at the next step.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    # Money, in micro-credits: the exact price held before the job was enqueued, the
    # price of one image, and what was captured (images delivered × unit price).
    price = models.BigIntegerField(default=0)
    unit_price = models.BigIntegerField(default=0)
    charged = models.BigIntegerField(default=0)

    input_text_tokens = models.PositiveIntegerField(default=0)
    input_image_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    inference_seconds = models.FloatField(null=True, blank=True)
    # Claimed, but waiting for the device: other batches running, or this batch forming.
    device_wait_seconds = models.FloatField(null=True, blank=True)
    # When the retention purge deleted its files (IMAGEHUB_IMAGE_RETENTION_DAYS): the row
    # stays, with its price, charge and usage; its images answer 410 (generations/retention.py).
    purged_at = models.DateTimeField(null=True, blank=True)
    # The output stage's verdict (generations/moderation/): {"moderation_stage": "output",
    # "categories": [...], "withheld": [image indices], "partials_withheld": k}; None
    # while nothing was withheld.
    moderation = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["status", "redispatch_at"], name="generation_redispatch"),
            models.Index(fields=["status", "heartbeat_at"], name="generation_heartbeat"),
            # Fair share (generations/fairness.py): who waits, and who was served lately.
            models.Index(
                fields=["status", "model", "organization", "created_at"],
                name="generation_waiting",
            ),
            models.Index(fields=["model", "started_at"], name="generation_served"),
            # The queue's pace (selectors.estimated_start_seconds): the last minutes of
            # succeeded jobs, whatever the size of the table.
            models.Index(
                fields=["model", "finished_at"],
                condition=models.Q(status="succeeded"),
                name="generation_succeeded",
            ),
            # The retention purge's next batch: only rows whose files are still kept.
            models.Index(
                fields=["created_at"],
                condition=models.Q(purged_at__isnull=True),
                name="generation_unpurged",
            ),
            # The operator dashboard's recovery counts of the last 24 hours
            # (selectors.job_counts): the few jobs that needed recovery, not the day's all.
            models.Index(fields=["created_at"], condition=INCIDENTS, name="generation_incidents"),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def total_tokens(self) -> int:
        return self.input_text_tokens + self.input_image_tokens + self.output_tokens

    def file_name(self, stem: str, extension: str) -> str:
        """Where a file of this generation is stored: ``<organization>/<yyyy/mm/dd>/<stem>.<ext>``
        under the ``images`` storage (its outputs, and its inputs in ``inputs/``)."""
        day = self.created_at.strftime("%Y/%m/%d")
        return f"{self.organization_id}/{day}/{stem}.{extension}"

    def timings(self) -> dict[str, float | None]:
        def seconds(a, b):
            return round((b - a).total_seconds(), 4) if a and b else None

        return {
            "queue": seconds(self.created_at, self.started_at),
            "device_wait": (
                round(self.device_wait_seconds, 4) if self.device_wait_seconds is not None else None
            ),
            "inference": round(self.inference_seconds, 4)
            if self.inference_seconds is not None
            else None,
            "total": seconds(self.created_at, self.finished_at),
        }


class GeneratedImage(models.Model):
    # Not indexed alone: the unique (generation, index) serves every lookup by generation.
    generation = models.ForeignKey(
        Generation, on_delete=models.CASCADE, related_name="images", db_index=False
    )
    index = models.PositiveSmallIntegerField()
    file = models.FileField(storage=images_storage, max_length=300)
    seed = models.BigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=32)
    bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["index"]
        constraints = [
            # The last line of defence against a redelivered job saving a second set.
            models.UniqueConstraint(fields=["generation", "index"], name="one_image_per_index")
        ]

    def __str__(self) -> str:
        return f"{self.generation_id}#{self.index}"


class ModelPrice(models.Model):
    """Staff's price for a catalog model; overrides the catalog's default rates."""

    model = models.CharField(max_length=200, unique=True, help_text="catalog model id")
    price_per_image = models.PositiveBigIntegerField(help_text="micro-credits per image")
    price_per_megapixel_step = models.PositiveBigIntegerField(
        help_text="micro-credits per (width × height × steps / 1,000,000), rounded up per image"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.model}: {self.price_per_image} + {self.price_per_megapixel_step}/MP-step"


class GenerationInput(models.Model):
    """An uploaded image (or mask) of an edit or variation, stored for the worker."""

    class Role(models.TextChoices):
        IMAGE = "image"
        MASK = "mask"

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="inputs")
    role = models.CharField(max_length=8, choices=Role.choices)
    index = models.PositiveSmallIntegerField(default=0)
    file = models.FileField(storage=images_storage, max_length=300)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=32)
    bytes = models.PositiveIntegerField()

    class Meta:
        ordering = ["role", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "role", "index"], name="one_input_per_role_index"
            )
        ]

    def __str__(self) -> str:
        return f"{self.generation_id}:{self.role}#{self.index}"


class QueueSample(models.Model):
    """Jobs in flight per model and organization, sampled once a minute by the workers'
    recovery loop (generations/recovery.py), for the operator dashboard's queue charts."""

    at = models.DateTimeField(db_index=True)  # the minute sampled
    model = models.CharField(max_length=200)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    queued = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["at", "model", "organization"], name="one_queue_sample_per_minute"
            )
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.model} org {self.organization_id}"


class ModelStatus(models.Model):
    """Whether a worker can load a model: written by each worker when it starts, every
    IMAGEHUB_MODEL_PROBE_SECONDS after, and whenever a load fails or first succeeds
    (generations/availability.py). The API refuses a model that every worker reporting
    lately said it cannot load, and /v1/models marks it."""

    model = models.CharField(max_length=200)
    worker = models.CharField(max_length=200)
    available = models.BooleanField()
    reason = models.TextField(blank=True)  # the sentence a tenant reads; "" when available
    checked_at = models.DateTimeField()
    # When this worker finished its warm-up run of the model on its device (null: not
    # warmed, it loads on its first job); /readyz?models=… waits for it.
    warm_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "worker"], name="one_status_per_worker")
        ]
        indexes = [models.Index(fields=["model", "checked_at"])]

    def __str__(self) -> str:
        return f"{self.model} on {self.worker}: {'ok' if self.available else self.reason}"


# Adapters and moderation records live with the rest of their packages; imported here so
# that Django registers them with this app.
from generations.adapters.models import Adapter, AdapterPrice  # noqa: E402, F401
from generations.moderation.models import ModerationBlock  # noqa: E402, F401
