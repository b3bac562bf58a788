"""Forms of the web pages. Validation of key settings matches the REST API's."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm, BaseUserCreationForm

from accounts.hooks import hooks
from accounts.models import APIKey, Membership, User
from accounts.services import MAX_BIGINT, MAX_EXPIRY_DAYS, MAX_INT, allowed_ips_check
from accounts.webhooks.events import EVENTS as WEBHOOK_EVENTS
from imagehub.errors import InvalidRequest


class SignInForm(AuthenticationForm):
    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class SignUpForm(BaseUserCreationForm):
    organization = forms.CharField(
        max_length=200,
        required=False,
        label="Organization name",
        help_text="Your first organization; you will be its owner.",
    )

    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        return User.objects.normalize_email(self.cleaned_data["email"]).strip().lower()

    def validate_unique(self) -> None:
        """Not here: a taken address must get the same answer as a new one (the view
        emails its owner instead), so the form never says it exists."""


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=200)


class ModerationForm(forms.Form):
    strict = forms.BooleanField(
        required=False,
        label="Always apply the whole content policy",
        help_text="Requests that send moderation 'low' are checked as 'auto': no category "
        "of the operator's policy is relaxed for this organization.",
    )


def _model_choices() -> list[tuple[str, str]]:
    unavailable = hooks.unavailable_models()
    marked = "{} (not available on this server)"
    return [
        (model_id, marked.format(model_id) if model_id in unavailable else model_id)
        for model_id in hooks.model_ids()
    ]


class _KeySettingsForm(forms.Form):
    name = forms.CharField(max_length=100, required=False)
    allowed_models = forms.MultipleChoiceField(
        choices=_model_choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked = every model.",
    )
    rpm_limit = forms.IntegerField(
        min_value=0, max_value=MAX_INT, required=False, label="Requests per minute"
    )
    max_concurrent = forms.IntegerField(
        min_value=0, max_value=MAX_INT, required=False, label="Concurrent generations"
    )
    monthly_spend_cap = forms.IntegerField(
        min_value=0,
        max_value=MAX_BIGINT,
        required=False,
        label="Monthly spend cap (µcredits)",
        help_text="In micro-credits: 1 credit = 1,000,000.",
    )

    allowed_ips = forms.CharField(
        required=False,
        label="Allowed IP addresses",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="CIDR networks, IPv4 or IPv6, separated by commas or lines "
        "(e.g. 203.0.113.0/24). Empty = anywhere.",
    )

    def model_boxes(self) -> list[tuple]:
        """(checkbox, what its model does) for the allowlist: the capabilities sit beside
        the label, whose text stays the model id."""
        capabilities = hooks.model_capabilities()
        return [
            (box, ", ".join(capabilities.get(box.data["value"], ())))
            for box in self["allowed_models"]
        ]

    def clean_allowed_ips(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_ips") or ""
        try:
            return allowed_ips_check([v for v in raw.replace(",", "\n").split() if v])
        except InvalidRequest as exc:
            raise forms.ValidationError(exc.message) from None

    def limits(self) -> dict[str, int | None]:
        data = self.cleaned_data
        return {f: data.get(f) for f in ("rpm_limit", "max_concurrent", "monthly_spend_cap")}


class KeyCreateForm(_KeySettingsForm):
    scope = forms.ChoiceField(choices=APIKey.Scope.choices, initial=APIKey.Scope.GENERATE)
    expires_in_days = forms.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRY_DAYS,
        required=False,
        label="Expires after (days)",
        help_text="Empty = never.",
    )

    field_order = ["name", "scope", "expires_in_days", "allowed_models"]


class KeyEditForm(_KeySettingsForm):
    pass


GRACE_CHOICES = [
    (0, "Immediately"),
    (3600, "After 1 hour"),
    (86400, "After 24 hours"),
    (7 * 86400, "After 7 days"),
]


class KeyRotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        choices=GRACE_CHOICES, coerce=int, initial=86400, label="Old secret stops working"
    )


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class WebhookForm(forms.Form):
    url = forms.CharField(
        max_length=2000,
        required=False,
        label="Default webhook URL",
        help_text="Every generation of the organization reports here, unless its request "
        "names its own <code>webhook</code>. Empty = none.",
    )
    events = forms.MultipleChoiceField(
        choices=[(e, e) for e in WEBHOOK_EVENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked = every event.",
    )


class WebhookRotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        choices=GRACE_CHOICES, coerce=int, initial=86400, label="Old secret stops signing"
    )
