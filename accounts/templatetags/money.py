"""{% load money %}: `{{ amount|credits }}`, `{{ amount|micro_credits }}`, and
`{% money amount %}`, the credits with the micro-credits figure as its title."""

from django import template
from django.utils.html import format_html

from accounts.money import format_credits, format_micro_credits

register = template.Library()


@register.filter
def credits(micro) -> str:
    return format_credits(micro)


@register.filter
def micro_credits(micro) -> str:
    return format_micro_credits(micro)


@register.simple_tag
def money(micro) -> str:
    if micro is None:
        return ""
    return format_html(
        '<span class="money" title="{}">{}</span>',
        format_micro_credits(micro),
        format_credits(micro),
    )
