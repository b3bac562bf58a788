"""Who sees which adapter: an organization sees its own and the operator's shared ones;
another organization's adapter does not exist for it (a 404, like an unknown id)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from accounts.models import Organization
from generations.adapters.models import Adapter


def adapters_visible(*, organization: Organization) -> QuerySet[Adapter]:
    return Adapter.objects.filter(Q(organization=organization) | Q(organization__isnull=True))


def adapter_list(*, organization: Organization) -> list[Adapter]:
    """The organization's adapters, newest first, then the shared ones."""
    return list(adapters_visible(organization=organization).order_by("organization", "-created_at"))


def adapter_get_visible(*, organization: Organization, adapter_id: str) -> Adapter | None:
    return adapters_visible(organization=organization).filter(pk=adapter_id).first()
