"""Sign-up, organization switching and creation, and accepting an invitation.

Sign-in, sign-out and password reset are Django's own views (accounts/views/signin.py
throttles them; accounts/views/urls.py routes them).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import members, services
from accounts.models import Membership
from accounts.selectors import SESSION_ORG_KEY
from accounts.views.forms import OrganizationForm, SignUpForm
from imagehub.errors import APIError


def signup(request):
    """Create an account, sign in, and create the first organization (or accept the
    invitation the person came from)."""
    if request.user.is_authenticated:
        return redirect("keys")
    token = request.GET.get("invite") or request.POST.get("invite")
    invitation = members.invitation_find_pending(token=token)
    form = SignUpForm(
        request.POST or None, initial={"email": invitation.email} if invitation else None
    )
    if request.method == "POST" and form.is_valid():
        user, org = services.user_sign_up(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
            organization_name=form.cleaned_data["organization"],
            invitation_token=token,
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session[SESSION_ORG_KEY] = org.pk
        messages.success(request, f"Welcome to imagehub. You are in {org.name}.")
        return redirect("keys")
    return render(
        request,
        "registration/signup.html",
        {"form": form, "invitation": invitation, "token": token or ""},
    )


@login_required
@require_POST
def switch_organization(request):
    org_id = request.POST.get("org_id", "")
    membership = (
        Membership.objects.filter(user=request.user, organization_id=org_id)
        .select_related("organization")
        .first()
        if org_id.isdigit()
        else None
    )
    if membership is None:
        messages.error(request, "You are not a member of that organization.")
        return redirect("keys")
    request.session[SESSION_ORG_KEY] = membership.organization_id
    messages.success(request, f"Switched to {membership.organization.name}.")
    back = request.POST.get("next", "")
    return redirect(back if back.startswith("/") and not back.startswith("//") else "keys")


@login_required
def organization_new(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        org = services.organization_create(name=form.cleaned_data["name"], owner=request.user)
        request.session[SESSION_ORG_KEY] = org.pk
        messages.success(request, f"Created {org.name}; you are its owner.")
        return redirect("keys")
    return render(request, "accounts/organization_new.html", {"form": form})


def invitation_accept(request, token: str):
    """GET shows the invitation; POST (signed in as the invited email) accepts it."""
    try:
        invitation = members.invitation_find(token=token)
    except APIError:
        invitation = None
    if request.method == "POST" and request.user.is_authenticated:
        try:
            membership = members.invitation_accept(token=token, user=request.user)
        except APIError as exc:
            messages.error(request, exc.message)
        else:
            request.session[SESSION_ORG_KEY] = membership.organization_id
            messages.success(request, f"You joined {membership.organization.name}.")
            return redirect("keys")
    return render(
        request,
        "accounts/invitation.html",
        {"invitation": invitation, "token": token},
        status=200 if invitation else 404,
    )
