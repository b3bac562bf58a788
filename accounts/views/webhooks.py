"""The webhooks page: the organization's default webhook, its signing secret (shown
once, rotatable with a grace period) and the delivery log with a redeliver button.

Owners and admins change things; members see the settings and the log. The rules and
the writes are accounts/webhooks/'s (endpoints.py, delivery.py).
"""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import selectors
from accounts.views import org_page
from accounts.views.forms import WebhookForm, WebhookRotateForm
from accounts.webhooks.delivery import delivery_list, delivery_redeliver
from accounts.webhooks.endpoints import (
    webhook_endpoint_get,
    webhook_endpoint_set,
    webhook_secret_rotate,
)
from imagehub.errors import InvalidRequest, PermissionError_

LOG_ROWS = 50


def _render(request, caller, *, form=None, revealed=None, status=200):
    endpoint = webhook_endpoint_get(organization_id=caller.organization.pk)
    if form is None:
        initial = {"url": endpoint.url, "events": endpoint.events} if endpoint else {}
        form = WebhookForm(initial=initial)
    response = render(
        request,
        "accounts/webhooks.html",
        {
            "caller": caller,
            "endpoint": endpoint,
            "secret_redacted": endpoint.secret_hint if endpoint else None,
            "form": form,
            "rotate_form": WebhookRotateForm(),
            "can_edit": caller.role in selectors.MANAGER_ROLES,
            "deliveries": delivery_list(organization=caller.organization)[:LOG_ROWS],
            "revealed": revealed,
        },
        status=status,
    )
    if revealed:
        response["Cache-Control"] = "no-store"  # the page carries a secret
    return response


def _check_manager(caller) -> None:
    if caller.role not in selectors.MANAGER_ROLES:
        raise PermissionError_("Only owners and admins can change webhooks.")


@org_page(back="webhooks")
def webhook_page(request, caller):
    if request.method != "POST":
        return _render(request, caller)
    _check_manager(caller)
    form = WebhookForm(request.POST)
    if not form.is_valid():
        return _render(request, caller, form=form, status=400)
    try:
        endpoint, secret = webhook_endpoint_set(
            organization=caller.organization,
            url=form.cleaned_data["url"],
            events=form.cleaned_data["events"],
        )
    except InvalidRequest as exc:
        form.add_error("url" if exc.param == "url" else None, exc.message)
        return _render(request, caller, form=form, status=400)
    if secret:
        return _render(request, caller, revealed={"secret": secret, "new": True})
    messages.success(request, "Saved the webhook settings.")
    return redirect("webhooks")


@require_POST
@org_page(back="webhooks")
def webhook_rotate(request, caller):
    _check_manager(caller)
    form = WebhookRotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose when the old secret stops signing.")
        return redirect("webhooks")
    endpoint, secret = webhook_secret_rotate(
        organization=caller.organization, grace_seconds=form.cleaned_data["grace_seconds"]
    )
    return _render(request, caller, revealed={"secret": secret, "new": False})


@require_POST
@org_page(back="webhooks")
def webhook_redeliver(request, caller, pk: int):
    _check_manager(caller)
    delivery = delivery_redeliver(organization=caller.organization, delivery_id=pk)
    messages.success(
        request, f"Sending the {delivery.event} event of {delivery.generation_id} again."
    )
    return redirect("webhooks")
