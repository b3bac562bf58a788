"""The ``loras`` of a generation or edit request: ``[{"id": "adp_…", "scale": 0.8}, …]``,
resolved against the adapters the caller's organization may use and checked against the
request's model. Every refusal names ``loras``; another organization's adapter is a 404,
exactly like an id that does not exist."""

from __future__ import annotations

from django.conf import settings

from accounts.models import Organization
from generations.adapters.models import Adapter
from generations.adapters.selectors import adapters_visible
from generations.catalog import ModelSpec
from imagehub.errors import InvalidRequest, NotFound

MIN_SCALE, MAX_SCALE = -2.0, 2.0
DEFAULT_SCALE = 1.0


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="loras", code="invalid_loras")


def parse_loras(value) -> list[tuple[str, float]]:
    """[(id, scale)] from the request's list of {id, scale} (scale defaults to 1)."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _bad('\'loras\' must be a list of {"id": "adp_…", "scale": number}.')
    limit = settings.MAX_ADAPTERS_PER_REQUEST
    if len(value) > limit:
        raise _bad(f"At most {limit} adapters per request; got {len(value)}.")
    parsed: list[tuple[str, float]] = []
    for position, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise _bad(f"loras[{position}] must be an object with an adapter 'id'.")
        unknown = sorted(set(item) - {"id", "scale"})
        if unknown:
            raise _bad(f"loras[{position}] has an unknown field '{unknown[0]}'.")
        scale = item.get("scale", DEFAULT_SCALE)
        if isinstance(scale, str):
            try:
                scale = float(scale)
            except ValueError:
                raise _bad(f"loras[{position}].scale must be a number.") from None
        if isinstance(scale, bool) or not isinstance(scale, int | float) or scale != scale:
            raise _bad(f"loras[{position}].scale must be a number.")
        if not MIN_SCALE <= scale <= MAX_SCALE:
            raise _bad(
                f"loras[{position}].scale is {scale}; it must be between {MIN_SCALE:g} and "
                f"{MAX_SCALE:g}."
            )
        if any(seen == item["id"] for seen, _ in parsed):
            raise _bad(f"The adapter '{item['id']}' is listed twice.")
        parsed.append((item["id"], float(scale)))
    return parsed


def resolve_loras(
    *, entries: list[tuple[str, float]], spec: ModelSpec, organization: Organization | None
) -> tuple[dict, ...]:
    """The request's adapters as recorded with the generation: ({id, name, scale}, …)."""
    if not entries:
        return ()
    if organization is None:
        raise NotFound(f"No adapter with id '{entries[0][0]}'.", param="loras")
    found = {
        a.pk: a
        for a in adapters_visible(organization=organization).filter(
            pk__in=[adapter_id for adapter_id, _ in entries]
        )
    }
    resolved = []
    for adapter_id, scale in entries:
        adapter = found.get(adapter_id)
        if adapter is None:
            raise NotFound(
                f"No adapter with id '{adapter_id}'. GET /v1/adapters lists yours.",
                param="loras",
                code="adapter_not_found",
            )
        _check_usable(adapter, spec)
        resolved.append({"id": adapter.pk, "name": adapter.name, "scale": scale})
    return tuple(resolved)


def _check_usable(adapter: Adapter, spec: ModelSpec) -> None:
    if adapter.base_model != spec.id:
        raise _bad(
            f"The adapter '{adapter.pk}' is for model '{adapter.base_model}', not "
            f"'{spec.id}': use it with model '{adapter.base_model}'."
        )
    if adapter.status != Adapter.Status.READY:
        raise _bad(
            f"The adapter '{adapter.pk}' cannot be used: a worker could not load it "
            f"({adapter.error_message or 'no reason given'}). Upload it again."
        )
