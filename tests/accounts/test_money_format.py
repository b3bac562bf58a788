"""Money on the pages: integer micro-credits shown as exact credits, never rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from accounts.money import credits_number, format_credits, format_micro_credits
from accounts.views.charts import stacked_bars


@pytest.mark.parametrize(
    ("micro", "shown"),
    [
        (1_500_000, "1.5 credits"),
        (1_900_000, "1.9 credits"),  # widthratio showed "2 cr"
        (100, "0.0001 credits"),
        (1, "0.000001 credits"),
        (0, "0 credits"),
        (1_000_000, "1 credit"),
        (2_000_000, "2 credits"),
        (999_999, "0.999999 credits"),
        (-2_500_000, "-2.5 credits"),
        (-1, "-0.000001 credits"),
        (1_234_567_890_123, "1,234,567.890123 credits"),
        (1_000_000_000_000, "1,000,000 credits"),
        # Far past a float's 15-16 digits and Decimal's default 28: still exact.
        (10**30 + 1, "1,000,000,000,000,000,000,000,000.000001 credits"),
        (2**63 - 1, "9,223,372,036,854.775807 credits"),  # the largest BigIntegerField
        ("5000", "0.005 credits"),
        (Decimal("2500000"), "2.5 credits"),
    ],
)
def test_credits_are_exact(micro, shown):
    assert format_credits(micro) == shown


def test_micro_credits_and_bare_numbers():
    assert format_micro_credits(1_500_000) == "1,500,000 micro-credits"
    assert format_micro_credits(1) == "1 micro-credit"
    assert format_micro_credits(-42) == "-42 micro-credits"
    assert credits_number(1_234_500_000) == "1,234.5"
    assert credits_number(625_000.0) == "0.625"  # a chart's tick


@pytest.mark.parametrize("junk", [None, "", "abc", "NaN"])
def test_nothing_or_junk_is_not_dressed_as_money(junk):
    assert format_credits(junk) == ("" if junk is None else junk)
    assert format_micro_credits(junk) == ("" if junk is None else junk)


def test_template_filters_and_tag():
    html = Template(
        "{% load money %}{{ a|credits }}|{{ a|micro_credits }}|{% money a %}|{% money none %}"
    ).render(Context({"a": 1_900_000, "none": None}))
    assert html == (
        "1.9 credits|1,900,000 micro-credits|"
        '<span class="money" title="1,900,000 micro-credits">1.9 credits</span>|'
    )


def test_money_chart_tooltips_and_axis_are_in_exact_credits():
    import datetime as dt

    days = [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]
    svg = stacked_bars(days, {"demo-sd": [1_234_567, 600]}, title="Spend", money=True)
    assert "1.234567 credits (1,234,567 micro-credits)" in svg
    assert "0.0006 credits (600 micro-credits)" in svg
    # The axis runs to a round 2 credits, labelled in credits (not "2M").
    assert [f">{tick}</text>" in svg for tick in ("0", "0.5", "1", "1.5", "2")] == [True] * 5
    small = stacked_bars(days, {"demo-sd": [600, 0]}, title="Spend", money=True)
    assert ">0.00025</text>" in small and ">0.001</text>" in small  # to 1,000 µcr
    images = stacked_bars(days, {"demo-sd": [3, 1]}, title="Images")
    assert "credits" not in images


def test_integers_read_the_same_as_their_decimal_text():
    """Integers take a fast path (charts format hundreds of amounts); it must agree with
    the exact Decimal path that strings of digits take."""
    import random

    rng = random.Random(24)
    amounts = [0, 1, -1, 10, 999_999, 1_000_000, -1_000_001, 1_234_500_000, 10**18 + 7]
    amounts += [rng.randint(-(10**16), 10**16) for _ in range(2000)]
    for micro in amounts:
        assert credits_number(micro) == credits_number(str(micro)), micro
        assert format_micro_credits(micro) == format_micro_credits(str(micro)), micro
