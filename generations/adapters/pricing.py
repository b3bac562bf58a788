"""The surcharge per image for each adapter of a request (integer micro-credits): the
operator's price for that adapter, else for every adapter of its base model, else
IMAGEHUB_ADAPTER_PRICE_PER_IMAGE (default 0). generations/pricing.py adds them to the
unit price, so the hold is the exact price with the adapters included."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from generations.adapters.models import Adapter, AdapterPrice


def surcharges(adapters: Sequence[Adapter]) -> list[int]:
    """One surcharge per adapter, in order."""
    if not adapters:
        return []
    by_adapter = dict(
        AdapterPrice.objects.filter(adapter__in=[a.pk for a in adapters]).values_list(
            "adapter_id", "price_per_image"
        )
    )
    by_model = dict(
        AdapterPrice.objects.filter(model__in={a.base_model for a in adapters}).values_list(
            "model", "price_per_image"
        )
    )
    default = settings.ADAPTER_PRICE_PER_IMAGE
    return [by_adapter.get(a.pk, by_model.get(a.base_model, default)) for a in adapters]


def adapter_charges(loras) -> list[dict]:
    """The request's adapters as recorded with the generation, each with its surcharge
    per image. An adapter at scale 0 is not applied, so it is not charged."""
    loras = [dict(lora) for lora in loras]
    if not loras:
        return []
    found = Adapter.objects.in_bulk([lora["id"] for lora in loras])
    applied = [found[lora["id"]] for lora in loras if lora["scale"] and lora["id"] in found]
    prices = dict(zip([a.pk for a in applied], surcharges(applied), strict=True))
    for lora in loras:
        lora["surcharge"] = prices.get(lora["id"], 0)
    return loras


def adapter_set_label(params: dict | None) -> str:
    """The applied adapters of a generation as usage groups them: ids sorted, "+"-joined."""
    loras = (params or {}).get("loras") or []
    return "+".join(sorted(lora["id"] for lora in loras if lora.get("scale")))[:200]
