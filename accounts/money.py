"""Money as people read it: integer micro-credits shown as exact credits.

1 credit = 1,000,000 micro-credits. Every figure is shown in full, never rounded: a
balance of 1,900,000 is "1.9 credits", not "2", and 100 is "0.0001 credits", not "0".
"""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext

MICRO_PER_CREDIT = 1_000_000


def _decimal(micro) -> Decimal | None:
    """The amount as an exact Decimal, or None for nothing or something not a number."""
    if micro is None or isinstance(micro, bool) or micro == "":
        return None
    try:
        # Integers (and strings of them) convert exactly; a float could carry binary
        # noise, so it goes through its shortest repr.
        amount = Decimal(repr(micro) if isinstance(micro, float) else micro)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return amount if amount.is_finite() else None


def _exact(amount: Decimal) -> Context:
    """A context with room for every digit of `amount`, where a rounding would raise."""
    return Context(
        prec=len(amount.as_tuple().digits) + 8, traps=[Inexact, InvalidOperation, Overflow]
    )


def _grouped(amount: Decimal) -> str:
    """Thousands separators, no trailing zeros after the point, "-" for negatives."""
    with localcontext(_exact(amount)):
        text = f"{abs(amount):,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"-{text}" if amount < 0 and text != "0" else text


def credits_number(micro) -> str:
    """The amount in credits: 1_234_500_000 -> "1,234.5", 100 -> "0.0001",
    -2_500_000 -> "-2.5"; "" for None."""
    if type(micro) is int:  # the usual case, exact in integers (charts draw hundreds)
        whole, fraction = divmod(abs(micro), MICRO_PER_CREDIT)
        text = f"{whole:,}" + (f".{fraction:06d}".rstrip("0") if fraction else "")
        return f"-{text}" if micro < 0 else text
    amount = _decimal(micro)
    if amount is None:
        return "" if micro is None else str(micro)
    return _grouped(amount.scaleb(-6, context=_exact(amount)))


def format_credits(micro) -> str:
    """1_500_000 -> "1.5 credits", 1_000_000 -> "1 credit", 0 -> "0 credits"."""
    if _decimal(micro) is None:
        return "" if micro is None else str(micro)
    number = credits_number(micro)
    return f"{number} {'credit' if number in ('1', '-1') else 'credits'}"


def format_micro_credits(micro) -> str:
    """1500000 -> "1,500,000 micro-credits" (the figure the API and the ledger use)."""
    if type(micro) is int:
        number = f"{micro:,}"
    else:
        amount = _decimal(micro)
        if amount is None:
            return "" if micro is None else str(micro)
        number = _grouped(amount)
    return f"{number} {'micro-credit' if number in ('1', '-1') else 'micro-credits'}"
