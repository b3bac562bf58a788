"""Django's sign-in and password-reset views, throttled (accounts/ratelimit.py): sign-in
through django-axes (every door into authenticate(), /admin/login/ too), whose lockout
answer is `lockout_response`; password-reset requests by the counters of ratelimit.py."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.forms.utils import ErrorDict
from django.http import HttpResponseRedirect
from django.shortcuts import render

from accounts import ratelimit
from accounts.views.forms import SignInForm


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the sign-in page with the wait, 429 and Retry-After (for
    /admin/login/ too: one page says how long to wait)."""
    wait = getattr(request, "signin_wait", 0) or int(settings.AXES_COOLOFF_TIME.total_seconds())
    form = SignInForm(request, data=request.POST or None)
    form._errors, form.cleaned_data = ErrorDict(), {}
    response = render(
        request,
        "registration/login.html",
        {"form": form, "throttled": ratelimit.signin_message(wait), "next": ""},
        status=429,
    )
    response["Retry-After"] = str(wait)
    return response


class _Throttled:
    throttle_kind = ""
    account_field = ""
    # Past the account's limit (but not the address's): answer as usual, without acting.
    quiet_account_limit = False

    def _throttled(self, wait: int):
        # Nothing is checked (no password hashed, no email sent): the page says how long
        # to wait.
        form = self.get_form()
        form._errors, form.cleaned_data = ErrorDict(), {}
        text = ratelimit.signin_message(wait)
        response = self.render_to_response(
            self.get_context_data(form=form, throttled=text), status=429
        )
        response["Retry-After"] = str(wait)
        return response

    def post(self, request, *args, **kwargs):
        where = {
            "address": ratelimit.client_address(request),
            "account": request.POST.get(self.account_field, ""),
        }
        wait, limit = ratelimit.signin_blocked(self.throttle_kind, **where)
        if limit == "account" and self.quiet_account_limit:
            # The account had its emails this hour (their links still work). Answer as
            # if one more was sent, so that someone else asking for it cannot make the
            # page refuse its owner; nothing is sent.
            return HttpResponseRedirect(self.get_success_url())
        if wait:
            return self._throttled(wait)
        response = super().post(request, *args, **kwargs)
        if self.counts(request, response):
            ratelimit.signin_record(self.throttle_kind, **where)
        return response


class LoginView(auth_views.LoginView):
    """Throttled by axes and SignInBackend, inside authenticate()."""


class PasswordResetView(_Throttled, auth_views.PasswordResetView):
    throttle_kind, account_field = "password_reset", "email"
    quiet_account_limit = True

    def counts(self, request, response) -> bool:
        return True  # each request may send an email
