"""Sign-up, organization switching and creation, and accepting an invitation.

Sign-in, sign-out and password reset are Django's own views (accounts/views/signin.py
throttles them; accounts/views/urls.py routes them).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import members, ratelimit, selectors, services, verification
from accounts.models import Membership
from accounts.selectors import SESSION_ORG_KEY
from accounts.views.forms import OrganizationForm, SignUpForm
from imagehub.errors import APIError

SIGNUP_EMAIL_KEY = "signup_email"


def _verify_url(request) -> str:
    return request.build_absolute_uri(reverse("verify-email", args=["TOKEN"])).replace(
        "TOKEN", "{token}"
    )


def _throttled(request, template: str, context: dict, wait: int):
    context = {**context, "throttled": ratelimit.signin_message(wait)}
    response = render(request, template, context, status=429)
    response["Retry-After"] = str(wait)
    return response


def signup(request):
    """Create an account and its first organization (or accept the invitation the person
    came from). Every address gets the same answer, the "check your email" page: a new
    one its verification link, a taken one an email telling its owner (no enumeration).
    A new account signs in at once only when an invitation for its address is used."""
    if request.user.is_authenticated:
        return redirect("keys")
    token = request.GET.get("invite") or request.POST.get("invite")
    invitation = members.invitation_find_pending(token=token)
    form = SignUpForm(
        request.POST or None, initial={"email": invitation.email} if invitation else None
    )
    context = {"form": form, "invitation": invitation, "token": token or ""}
    if request.method != "POST":
        return render(request, "registration/signup.html", context)
    where = {
        "address": ratelimit.client_address(request),
        "account": request.POST.get("email", ""),
    }
    wait = ratelimit.signin_blocked_for("signup", **where)
    if wait:
        return _throttled(request, "registration/signup.html", context, wait)
    if not form.is_valid():
        return render(request, "registration/signup.html", context)
    ratelimit.signin_record("signup", **where)
    email, password = form.cleaned_data["email"], form.cleaned_data["password1"]
    created = None
    if not selectors.user_exists(email=email):
        try:
            created = services.user_sign_up(
                email=email,
                password=password,
                organization_name=form.cleaned_data["organization"],
                invitation_token=token,
            )
        except IntegrityError:  # signed up concurrently: now a taken address
            created = None
    if created is None:
        make_password(password)  # the same work as for a new account
        verification.signup_known_address_notify(
            email=email,
            login_url=request.build_absolute_uri(reverse("login")),
            reset_url=request.build_absolute_uri(reverse("password_reset")),
        )
    else:
        user, org = created
        if user.email_verified_at is not None:  # the invitation's link came to this address
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_ORG_KEY] = org.pk
            messages.success(request, f"Welcome to imagehub. You are in {org.name}.")
            return redirect("keys")
        verification.verification_send(user=user, verify_url=_verify_url(request))
    request.session[SIGNUP_EMAIL_KEY] = email
    return redirect("signup-sent")


def signup_sent(request):
    return render(
        request, "registration/signup_sent.html", {"email": request.session.get(SIGNUP_EMAIL_KEY)}
    )


def verify_email(request, token: str):
    """The link of the verification email: marks the address verified (and the starting
    credits go to the person's first organization)."""
    try:
        user = verification.user_verify(token=token)
    except APIError as exc:
        messages.error(request, exc.message)
        return redirect("keys" if request.user.is_authenticated else "login")
    messages.success(request, f"Verified {user.email}: you can create API keys now.")
    return redirect("keys" if request.user.is_authenticated else "login")


@login_required
@require_POST
def verify_email_resend(request):
    user = request.user
    back = request.POST.get("next", "")
    back = back if back.startswith("/") and not back.startswith("//") else reverse("keys")
    if user.email_verified_at is not None:
        return redirect(back)
    where = {"address": ratelimit.client_address(request), "account": user.email}
    wait = ratelimit.signin_blocked_for("signup", **where)
    if wait:
        messages.error(request, ratelimit.signin_message(wait))
        return redirect(back)
    ratelimit.signin_record("signup", **where)
    verification.verification_send(user=user, verify_url=_verify_url(request))
    messages.success(request, f"Sent a new verification link to {user.email}.")
    return redirect(back)


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
        try:
            org = services.organization_create(name=form.cleaned_data["name"], owner=request.user)
        except APIError as exc:
            form.add_error("name", exc.message)
            return render(request, "accounts/organization_new.html", {"form": form}, status=400)
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
