"""The web pages: sign-up and sign-in, API keys, members and the organization, webhooks,
usage and the operator dashboard.

- auth.py, signin.py    sign-up, invitations, organizations; Django's sign-in and
                        password reset, throttled
- keys.py, members.py, webhooks.py, usage.py   the pages of the organization
- forms.py              their forms; charts.py the usage charts (inline SVG)
- context_processors.py what every page's header needs
- urls.py               the routes (included by imagehub/urls.py)

Views are thin: they parse a form, call a service from the domain modules of accounts/
(services, members, webhooks) and render. The services raise the project's API errors;
pages show them as messages (400, 403) or as a 404 page (another tenant's ids). Pages never
import the REST API (accounts/api/), nor it them.
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
