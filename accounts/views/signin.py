"""Django's sign-in and password-reset views, throttled (accounts/ratelimit.py)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.forms.utils import ErrorDict

from accounts import ratelimit


class _Throttled:
    throttle_kind = ""
    account_field = ""

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
        wait = ratelimit.signin_blocked_for(self.throttle_kind, **where)
        if wait:
            return self._throttled(wait)
        response = super().post(request, *args, **kwargs)
        if self.counts(request, response):
            ratelimit.signin_record(self.throttle_kind, **where)
        return response


class LoginView(_Throttled, auth_views.LoginView):
    throttle_kind, account_field = "login", "username"

    def counts(self, request, response) -> bool:
        return not request.user.is_authenticated  # only failed sign-ins count


class PasswordResetView(_Throttled, auth_views.PasswordResetView):
    throttle_kind, account_field = "password_reset", "email"

    def counts(self, request, response) -> bool:
        return True  # each request may send an email
