"""The web pages: sign-up and sign-in, API keys, members and the organization.

Views are thin: they parse a form, call a service from accounts.services or
accounts.members, and render. The services raise the project's API errors; pages show
them as messages (400, 403) or as a 404 page (another tenant's ids).
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect

from accounts import selectors
from imagehub.errors import APIError, NotFound, PermissionError_


def org_page(back: str | None = None):
    """Login required; the view gets the Caller (the person in their current organization).

    A person with no organization is sent to create one. A NotFound from a service
    becomes a 404 page; other service errors become a message and a redirect to the page
    named ``back`` (default: the same URL).
    """

    def decorate(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                caller = selectors.caller_for_request(request)
            except PermissionError_:
                return redirect("organization-new")
            try:
                return view(request, caller, *args, **kwargs)
            except NotFound as exc:
                raise Http404(exc.message) from exc
            except APIError as exc:
                messages.error(request, exc.message)
                return redirect(back or request.path)

        return wrapper

    return decorate
