"""The API keys page: list, create (with the one-time reveal), edit, rotate, revoke.

The permission rules are the management API's (accounts.selectors): owners and admins
manage every key of the organization, members the keys they created; another tenant's
key id is a 404.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import selectors, services, usage
from accounts.views import org_page
from accounts.views.forms import KeyCreateForm, KeyEditForm, KeyRotateForm


def _render_keys(request, caller, *, form=None, revealed=None, status=200):
    response = render(
        request,
        "accounts/keys.html",
        {
            "caller": caller,
            "keys": selectors.api_key_list(caller=caller),
            "form": form or KeyCreateForm(),
            "revealed": revealed,
        },
        status=status,
    )
    if revealed:
        # The page carries a secret: keep it out of every cache.
        response["Cache-Control"] = "no-store"
    return response


@org_page()
def key_list(request, caller):
    if request.method != "POST":
        return _render_keys(request, caller)
    form = KeyCreateForm(request.POST)
    if not form.is_valid():
        return _render_keys(request, caller, form=form, status=400)
    data = form.cleaned_data
    days = data["expires_in_days"]
    key, secret = services.api_key_create(
        organization=caller.organization,
        created_by=caller.user,
        name=data["name"],
        scope=data["scope"],
        expires_at=timezone.now() + timedelta(days=days) if days else None,
        allowed_models=data["allowed_models"],
        allowed_ips=data["allowed_ips"],
        limits=form.limits(),
    )
    # Rendered in the POST's own response, never stored: the secret is shown this once.
    return _render_keys(request, caller, revealed={"key": key, "secret": secret, "new": True})


@org_page(back="keys")
def key_detail(request, caller, pk: int):
    key = selectors.api_key_get(caller=caller, key_id=pk)
    if request.method == "POST":
        form = KeyEditForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            services.api_key_update(
                key=key,
                name=data["name"],
                allowed_models=data["allowed_models"],
                allowed_ips=data["allowed_ips"],
                limits=form.limits(),
            )
            messages.success(request, f"Saved the settings of “{key.name or key.redacted}”.")
            return redirect("key-detail", pk=key.pk)
    else:
        form = KeyEditForm(
            initial={
                "name": key.name,
                "allowed_models": key.allowed_models,
                "allowed_ips": "\n".join(key.allowed_ips),
                "rpm_limit": key.rpm_limit,
                "max_concurrent": key.max_concurrent,
                "monthly_spend_cap": key.monthly_spend_cap,
            }
        )
    return render(
        request,
        "accounts/key_detail.html",
        {
            "key": key,
            "form": form,
            "rotate_form": KeyRotateForm(),
            "spent": usage.spent_this_month(organization=caller.organization, api_key=key),
            "committed": usage.committed_this_month(organization=caller.organization, api_key=key),
        },
        status=400 if form.errors else 200,
    )


@require_POST
@org_page(back="keys")
def key_rotate(request, caller, pk: int):
    key = selectors.api_key_get(caller=caller, key_id=pk)
    form = KeyRotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose when the old secret stops working.")
        return redirect("key-detail", pk=key.pk)
    key, secret = services.api_key_rotate(key=key, grace_seconds=form.cleaned_data["grace_seconds"])
    return _render_keys(request, caller, revealed={"key": key, "secret": secret, "new": False})


@require_POST
@org_page(back="keys")
def key_revoke(request, caller, pk: int):
    key = services.api_key_revoke(key=selectors.api_key_get(caller=caller, key_id=pk))
    messages.success(request, f"Revoked “{key.name or key.redacted}”. It stops working now.")
    return redirect("keys")
