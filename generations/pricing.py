"""Prices, in integer micro-credits (1 credit = 1,000,000 micro-credits). The only price
calculation: generation_create (generations/services.py) calls it.

One formula, following compute::

    unit  = price_per_image
            + ceil((width × height × steps + input_pixels) × price_per_megapixel_step / 10⁶)
            + the surcharges of the request's adapters (generations/adapters/pricing.py)
    price = n × unit

``input_pixels`` is the pixels of every input image of an edit or variation (0 for
text-to-image): each is decoded, resized and encoded, work that grows with its pixels, so
each input pixel costs what one denoising step of one output pixel costs, for every image
delivered. Their total is also bounded (``IMAGEHUB_MAX_INPUT_PIXELS``).

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


def unit_price(rates: Rates, *, width: int, height: int, steps: int, input_pixels: int = 0) -> int:
    compute = (width * height * steps + input_pixels) * rates.price_per_megapixel_step
    return rates.price_per_image + -(-compute // MEGAPIXEL)  # ceiling division, integers only


def request_price(
    spec: ModelSpec,
    *,
    width: int,
    height: int,
    steps: int,
    n: int,
    input_pixels: int = 0,
    adapter_surcharge: int = 0,
) -> tuple[int, int]:
    """(unit price per image, total price of the request). `adapter_surcharge`: the
    per-image surcharges of the adapters the request uses, added up."""
    unit = unit_price(
        rates_for(spec), width=width, height=height, steps=steps, input_pixels=input_pixels
    )
    unit += adapter_surcharge
    return unit, unit * n
