from django import forms
from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join

from generations.catalog import all_models
from generations.models import (
    Adapter,
    AdapterPrice,
    GeneratedImage,
    Generation,
    ModelPrice,
    ModerationBlock,
)
from generations.signed_urls import signed_url


def _thumbnail(image: GeneratedImage, request, size: int = 96) -> str:
    return format_html(
        '<a href="{0}" target="_blank"><img src="{0}" alt="image {1}" '
        'style="width:{2}px;height:{2}px;object-fit:cover;border-radius:4px"></a>',
        signed_url(image.file, request.build_absolute_uri("/")),
        image.index,
        size,
    )


class GeneratedImageInline(admin.TabularInline):
    model = GeneratedImage
    extra = 0
    can_delete = False
    fields = ("preview", "index", "seed", "width", "height", "content_type", "bytes", "file")
    readonly_fields = fields

    def preview(self, obj):
        return _thumbnail(obj, self.request, 128)

    def get_formset(self, request, obj=None, **kwargs):
        self.request = request
        return super().get_formset(request, obj, **kwargs)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "thumbnails",
        "organization",
        "model",
        "status",
        "size",
        "n",
        "steps",
        "total_tokens",
        "created_at",
        "duration",
    )
    list_filter = ("status", "model", "organization", "error_code", "created_at")
    search_fields = ("id", "prompt", "organization__name", "end_user")
    date_hierarchy = "created_at"
    list_select_related = ("organization",)
    readonly_fields = [f.name for f in Generation._meta.fields]
    inlines = [GeneratedImageInline]

    def get_queryset(self, request):
        self.request = request
        return super().get_queryset(request).prefetch_related("images")

    @admin.display(description="images")
    def thumbnails(self, obj):
        return format_html_join(
            "", "{}", ((_thumbnail(image, self.request, 48),) for image in obj.images.all())
        )

    @admin.display(description="seconds")
    def duration(self, obj):
        return obj.timings()["total"]

    def has_add_permission(self, request):
        return False


class ModelPriceForm(forms.ModelForm):
    model = forms.ChoiceField(choices=())

    class Meta:
        model = ModelPrice
        fields = ("model", "price_per_image", "price_per_megapixel_step")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [
            (
                spec.id,
                f"{spec.id} (catalog: {spec.price_per_image} + "
                f"{spec.price_per_megapixel_step}/MP-step)",
            )
            for spec in all_models()
        ]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices in micro-credits: n × (per image + ceil(W×H×steps×per MP-step / 10⁶))."""

    form = ModelPriceForm
    list_display = ("model", "price_per_image", "price_per_megapixel_step", "updated_at")


@admin.register(ModerationBlock)
class ModerationBlockAdmin(admin.ModelAdmin):
    """Every block of the content policy, for review (kept
    IMAGEHUB_MODERATION_RETENTION_DAYS). Records of what happened: read-only. Suspended
    keys are lifted from the API keys list (its "Lift the suspension" action)."""

    list_display = ("created_at", "stage", "categories", "organization", "api_key", "prompt")
    list_filter = ("stage", "moderation", "organization")
    search_fields = ("prompt", "negative_prompt", "generation_id", "organization__name")
    date_hierarchy = "created_at"
    list_select_related = ("organization", "api_key")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Adapter)
class AdapterAdmin(admin.ModelAdmin):
    """Adapters per organization (empty organization: the operator's, shared with all).
    Uploads go through the API or the Adapters page, where they are checked."""

    list_display = (
        "id",
        "name",
        "owner",
        "base_model",
        "size",
        "rank",
        "status",
        "created_at",
        "last_used_at",
    )
    list_filter = ("organization", "base_model", "status")
    search_fields = ("id", "name", "organization__name")
    list_select_related = ("organization",)
    readonly_fields = [f.name for f in Adapter._meta.fields if f.name not in ("name", "status")]

    @admin.display(description="organization", ordering="organization__name")
    def owner(self, obj):
        return obj.organization or "shared (operator)"

    @admin.display(description="size", ordering="bytes")
    def size(self, obj):
        return filesizeformat(obj.bytes)

    def has_add_permission(self, request):
        return False


class AdapterPriceForm(forms.ModelForm):
    model = forms.ChoiceField(choices=(), required=False)

    class Meta:
        model = AdapterPrice
        fields = ("model", "adapter", "price_per_image")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "— one adapter (below) —")] + [
            (spec.id, f"every adapter of {spec.id}") for spec in all_models()
        ]

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("model")) == bool(cleaned.get("adapter")):
            raise forms.ValidationError("Choose a model or one adapter, not both.")
        return cleaned


@admin.register(AdapterPrice)
class AdapterPriceAdmin(admin.ModelAdmin):
    """Surcharge per image for each adapter a request applies (micro-credits): one
    adapter's price wins over its model's; with neither, IMAGEHUB_ADAPTER_PRICE_PER_IMAGE."""

    form = AdapterPriceForm
    list_display = ("__str__", "model", "adapter", "price_per_image", "updated_at")
    autocomplete_fields = ("adapter",)
