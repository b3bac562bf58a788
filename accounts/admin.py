from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import APIKey, CreditEntry, Membership, Organization, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "date_joined")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "credit_balance", "created_at")
    search_fields = ("name", "slug")
    readonly_fields = ("credit_balance",)
    inlines = [MembershipInline]


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    # The digest is deliberately absent: it is useless to a person and we show as
    # little about secrets as we can.
    list_display = (
        "name",
        "redacted",
        "organization",
        "scope",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("scope", "organization")
    search_fields = ("name", "prefix", "organization__name")
    fields = (
        "organization",
        "created_by",
        "name",
        "scope",
        "prefix",
        "last_four",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "allowed_models",
        "rpm_limit",
        "max_concurrent",
        "monthly_spend_cap",
        "previous_prefix",
        "previous_expires_at",
    )
    readonly_fields = (
        "prefix",
        "last_four",
        "created_at",
        "last_used_at",
        "previous_prefix",
        "previous_expires_at",
    )

    def has_add_permission(self, request):
        return False  # keys are created where the secret can be shown once


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "organization", "kind", "amount", "idempotency_key", "memo")
    list_filter = ("kind",)
    search_fields = ("organization__name", "idempotency_key")

    def has_change_permission(self, request, obj=None):
        return False  # append-only

    def has_delete_permission(self, request, obj=None):
        return False
