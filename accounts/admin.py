from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.shortcuts import render

from accounts.ledger import credits_top_up
from accounts.members import membership_change_role, membership_remove
from accounts.models import (
    APIKey,
    AuditEntry,
    CreditEntry,
    Invitation,
    Membership,
    Organization,
    User,
)
from accounts.money import format_credits
from accounts.selectors import Caller
from accounts.suspension import api_key_lift_suspension
from accounts.webhooks.models import WebhookDelivery
from imagehub.errors import APIError


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


class TopUpForm(forms.Form):
    amount = forms.IntegerField(min_value=1, help_text="micro-credits (1 credit = 1,000,000)")
    memo = forms.CharField(max_length=200, required=False)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "balance",
        "held",
        "spend_cap",
        "queue_priority",
        "queue_weight",
        "created_at",
    )
    search_fields = ("name", "slug")
    # Balances move only through the ledger (the "Add credits" action, add_credits).
    readonly_fields = ("credit_balance", "credits_held", "low_balance_notified_month")
    inlines = [MembershipInline]
    actions = ["add_credits"]

    def save_formset(self, request, form, formset, change):
        """Memberships removed or demoted here go through the same services as on the
        Members page: the person's keys in the organization are revoked (as a demotion
        revokes those made with the higher role) and an audit entry names the staff user
        who did it. The last owner stays, with a message saying why."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        instances = formset.save(commit=False)
        for membership in formset.deleted_objects:
            self._membership_service(request, membership, remove=True)
        for membership in instances:
            if membership.pk is None:
                membership.save()
                continue
            self._membership_service(request, membership, remove=False)
        formset.save_m2m()
        return None

    def _membership_service(self, request, membership: Membership, *, remove: bool) -> None:
        stored = Membership.objects.select_related("user", "organization").get(pk=membership.pk)
        # Staff act with an owner's powers; the audit entry names them.
        caller = Caller(organization=stored.organization, user=request.user, role="owner")
        try:
            if remove:
                membership_remove(caller=caller, membership=stored)
            elif stored.role != membership.role:
                membership_change_role(caller=caller, membership=stored, role=membership.role)
        except APIError as exc:
            self.message_user(request, f"{stored.user.email}: {exc.message}", messages.ERROR)

    # Exact credits in the list (accounts/money.py); the micro-credits in the edit form.
    @admin.display(description="balance", ordering="credit_balance")
    def balance(self, organization):
        return format_credits(organization.credit_balance)

    @admin.display(description="held", ordering="credits_held")
    def held(self, organization):
        return format_credits(organization.credits_held)

    @admin.display(description="monthly spend cap", ordering="monthly_spend_cap")
    def spend_cap(self, organization):
        cap = organization.monthly_spend_cap
        return "none" if cap is None else format_credits(cap)

    @admin.action(description="Add credits to the selected organizations")
    def add_credits(self, request, queryset):
        form = TopUpForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for organization in queryset:
                credits_top_up(
                    organization=organization,
                    amount=form.cleaned_data["amount"],
                    memo=form.cleaned_data["memo"] or f"admin top-up by {request.user.email}",
                )
            self.message_user(
                request,
                f"Added {format_credits(form.cleaned_data['amount'])} "
                f"({form.cleaned_data['amount']} micro-credits) to {queryset.count()} "
                "organization(s).",
                messages.SUCCESS,
            )
            return None
        return render(
            request,
            "admin/accounts/organization/add_credits.html",
            {
                **self.admin_site.each_context(request),
                "title": "Add credits",
                "organizations": queryset,
                "form": form,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )


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
        "suspended_at",
    )
    list_filter = ("scope", ("suspended_at", admin.EmptyFieldListFilter), "organization")
    actions = ["lift_suspension"]
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
        "suspended_at",
        "suspended_reason",
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
        "suspended_at",
        "suspended_reason",
    )

    def has_add_permission(self, request):
        return False  # keys are created where the secret can be shown once

    @admin.action(description="Lift the suspension of the selected keys")
    def lift_suspension(self, request, queryset):
        lifted = sum(
            api_key_lift_suspension(key=key) for key in queryset.filter(suspended_at__isnull=False)
        )
        self.message_user(request, f"Lifted the suspension of {lifted} key(s).")


@admin.register(CreditEntry)
class CreditEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "organization", "kind", "amount", "idempotency_key", "memo")
    list_filter = ("kind",)
    search_fields = ("organization__name", "idempotency_key")

    def has_change_permission(self, request, obj=None):
        return False  # append-only

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are made and accepted in the members page; here they are only shown
    (the token is not stored, so no link can be made here)."""

    list_display = ("email", "organization", "role", "status", "invited_by", "created_at")
    list_filter = ("role",)
    search_fields = ("email", "organization__name")
    readonly_fields = [f.name for f in Invitation._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log of every organization (tenants see theirs at /webhooks/). Shown,
    not edited: a redelivery goes through the page or the API."""

    list_display = (
        "created_at", "organization", "event", "generation_id", "status", "attempts",
        "last_status_code", "next_attempt_at",
    )  # fmt: skip
    list_filter = ("status", "event")
    search_fields = ("generation_id", "msg_id", "organization__name", "url")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: entries are written by accounts/members.py, never by hand."""

    list_display = ("created_at", "organization", "actor_email", "action", "subject_email")
    list_filter = ("action",)
    search_fields = ("actor_email", "subject_email", "organization__name")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
