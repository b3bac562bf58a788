"""Prices, in integer micro-credits (1 credit = 1,000,000 micro-credits). The only price
calculation: generation_create (generations/services.py) calls it.

One formula, following compute::

    unit  = price_per_image + ceil(width × height × steps × price_per_megapixel_step / 10⁶)
    price = n × unit

A request's price is known before it runs, so the hold is exact. Capture charges
``delivered × unit``, so a request that delivers fewer images than it asked for pays
only for those. Catalog entries carry default rates; staff override them per model in
the admin (ModelPrice), and the override wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from generations.catalog import ModelSpec
from generations.models import ModelPrice

MEGAPIXEL = 1_000_000


@dataclass(frozen=True)
class Rates:
    price_per_image: int
    price_per_megapixel_step: int


def rates_for(spec: ModelSpec) -> Rates:
    override = ModelPrice.objects.filter(model=spec.id).first()
    if override is not None:
        return Rates(override.price_per_image, override.price_per_megapixel_step)
    return Rates(spec.price_per_image, spec.price_per_megapixel_step)


def unit_price(rates: Rates, *, width: int, height: int, steps: int) -> int:
    compute = width * height * steps * rates.price_per_megapixel_step
    return rates.price_per_image + -(-compute // MEGAPIXEL)  # ceiling division, integers only


def request_price(
    spec: ModelSpec, *, width: int, height: int, steps: int, n: int
) -> tuple[int, int]:
    """(unit price per image, total price of the request)."""
    unit = unit_price(rates_for(spec), width=width, height=height, steps=steps)
    return unit, unit * n
