"""What every page's header needs: the navigation and the organization switcher."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership
from accounts.selectors import SESSION_ORG_KEY

# (url name, label). Other apps add their pages here (e.g. "Usage").
NAV_LINKS = [
    ("keys", "Keys"),
    ("model-catalog", "Models"),
    ("usage", "Usage"),
    ("members", "Members"),
    ("webhooks", "Webhooks"),
    ("adapters", "Adapters"),  # generations/views/adapters.py
    ("organization", "Organization"),
]


def navigation(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    memberships = list(
        Membership.objects.filter(user=user).select_related("organization").order_by("created_at")
    )
    chosen = str(request.session.get(SESSION_ORG_KEY, ""))
    current = next((m for m in memberships if str(m.organization_id) == chosen), None) or (
        memberships[0] if memberships else None
    )
    path = request.path
    nav_links = []
    for name, label in NAV_LINKS:
        url = reverse(name)
        nav_links.append({"url": url, "label": label, "active": path.startswith(url)})
    return {
        "nav_links": nav_links,
        "memberships": memberships,
        "current_membership": current,
        "current_org": current.organization if current else None,
        "now": timezone.now(),
    }
