"""Stacked bar charts as inline SVG, drawn on the server: no JavaScript, no CDN."""

from __future__ import annotations

import datetime as dt

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from accounts.money import credits_number, format_credits, format_micro_credits

PALETTE = (
    "#4f46e5",
    "#0891b2",
    "#16a34a",
    "#ca8a04",
    "#dc2626",
    "#9333ea",
    "#db2777",
    "#65a30d",
    "#ea580c",
    "#64748b",
)
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _short(value: float) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if abs(value) >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _credits_tick(micro: float) -> str:
    """An axis label in credits: "0.000625" below one credit, "2.5", "1.5k" above."""
    return _short(micro / 1_000_000) if micro >= 1_000_000 else credits_number(micro)


def stacked_bars(
    days: list[dt.date],
    series: dict[str, list[int]],
    *,
    title: str,
    scale: float = 1.0,
    unit: str = "",
    time_format: str = "%b %d",
    empty: str = "No usage in this period.",
    money: bool = False,
) -> SafeString:
    """One bar per day (or per any time step: `time_format` labels them), one colour per
    series; values are divided by `scale`. With `money`, the values are micro-credits:
    the axis is labelled in credits and each bar's tooltip gives its exact amount."""
    labels = sorted(series, key=lambda name: -sum(series[name]))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(labels)}
    totals = [sum(series[name][i] for name in labels) / scale for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar_w = max(1.0, slot * 0.7)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):  # grid lines and y labels
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        )
        tick = _credits_tick(value) if money else _short(value) + unit
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#6b7280">{escape(tick)}</text>'
        )
    label_every = max(1, len(days) // 10)
    for i, day in enumerate(days):
        x = LEFT + slot * i + (slot - bar_w) / 2
        y = TOP + plot_h
        for name in reversed(labels):
            value = series[name][i] / scale
            if value <= 0:
                continue
            h = plot_h * value / top
            y -= h
            if money:
                raw = series[name][i]
                amount = f"{format_credits(raw)} ({format_micro_credits(raw)})"
            else:
                amount = f"{value:g}{unit}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colours[name]}"><title>{escape(name)} {day:{time_format}}: '
                f"{escape(amount)}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
                f'font-size="11" fill="#6b7280">{day:{time_format}}</text>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="legend-item"><i style="background:{colours[name]}"></i>{escape(name)}</span>'
        for name in labels
    )
    note = "" if labels else f'<p class="muted">{escape(empty)}</p>'
    return mark_safe(
        f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>'
        f'{"".join(parts)}<div class="legend">{legend}</div>{note}</figure>'
    )
