"""The tenant's usage page and the operator dashboard (staff)."""

from __future__ import annotations

import datetime as dt

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render
from django.utils import timezone
from django.utils.dateparse import parse_date

from accounts import dashboards, usage
from accounts.hooks import hooks
from accounts.views import charts, org_page

MAX_DAYS = 366


def _date(value: str | None) -> dt.date | None:
    try:
        return parse_date(value or "")
    except ValueError:  # well-formed but impossible, like 2026-13-40
        return None


def _range(request, default_days: int = 30) -> tuple[dt.date, dt.date, str]:
    """[start, end) in whole UTC days from ?start=&end= (end inclusive in the form)."""
    today = timezone.now().astimezone(dt.UTC).date()
    start = _date(request.GET.get("start")) or today - dt.timedelta(default_days - 1)
    last = _date(request.GET.get("end")) or today
    error = ""
    if last < start:
        start, last, error = last, start, "The end came before the start; they were swapped."
    if (last - start).days >= MAX_DAYS:
        start, error = last - dt.timedelta(MAX_DAYS - 1), f"At most {MAX_DAYS} days are shown."
    return start, last + dt.timedelta(days=1), error


@org_page()
def usage_page(request, caller):
    start, end, range_error = _range(request)
    data = dashboards.tenant_usage(
        organization=caller.organization,
        start=start,
        end=end,
        only_keys_of=None if caller.manages_all_keys else caller.user,
    )
    credits = usage.credits_summary(organization=caller.organization, api_key=None)
    days = data["days"]
    return render(
        request,
        "accounts/usage.html",
        {
            "caller": caller,
            "start": start,
            "end": end - dt.timedelta(days=1),
            "range_error": range_error,
            "credits": credits,
            "totals": data["totals"],
            "charts": [
                charts.stacked_bars(
                    days,
                    data["credits_by_model"],
                    title="Spend per day by model (credits)",
                    money=True,
                ),
                charts.stacked_bars(days, data["images_by_model"], title="Images per day by model"),
                charts.stacked_bars(
                    days, data["credits_by_key"], title="Spend per day by key (credits)", money=True
                ),
                charts.stacked_bars(days, data["images_by_key"], title="Images per day by key"),
            ],
            "csv_query": f"start={start.isoformat()}&end={end.isoformat()}&group_by=model,key"
            "&format=csv",
        },
    )


@staff_member_required
def operator_dashboard(request):
    start, end, range_error = _range(request)
    data = dashboards.operator_overview(start=start, end=end)
    days = data["days"]
    return render(
        request,
        "admin/operator_dashboard.html",
        {
            "title": "Operator dashboard",
            "start": start,
            "end": end - dt.timedelta(days=1),
            "range_error": range_error,
            "data": data,
            "charts": [
                charts.stacked_bars(days, data["images_by_model"], title="Images per day by model"),
                charts.stacked_bars(
                    days,
                    data["credits_by_model"],
                    title="Spend per day by model (credits)",
                    money=True,
                ),
                *_queue_charts(),
                *_moderation_charts(start, end),
            ],
        },
    )


def _moderation_charts(start, end):
    history = hooks.moderation_history(start=start, end=end)
    return [
        charts.stacked_bars(
            history["days"],
            history[series],
            title=f"Moderation blocks per day by {label}",
            empty="No request or image was blocked by the content policy in this period.",
        )
        for series, label in (("by_organization", "organization"), ("by_category", "category"))
    ]


def _queue_charts():
    history = hooks.queue_history(hours=24)
    return [
        charts.stacked_bars(
            history["hours"],
            history[series],
            title=f"Queued jobs by {label}, last 24 h (hourly peak)",
            time_format="%H:%M",
            empty="No queued jobs in the last 24 hours.",
        )
        for series, label in (("by_model", "model"), ("by_organization", "organization"))
    ]
