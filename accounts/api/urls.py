"""URLs of the REST API of accounts (the pages' are in accounts/views/urls.py)."""

from django.urls import path

from accounts.api import keys, organization, usage, webhooks

urlpatterns = [
    path("v1/keys", keys.KeyListView.as_view(), name="api-keys"),
    path("v1/keys/<int:pk>", keys.KeyDetailView.as_view(), name="api-key-detail"),
    path("v1/keys/<int:pk>/rotate", keys.KeyRotateView.as_view(), name="api-key-rotate"),
    path("v1/organization", organization.OrganizationView.as_view(), name="organization"),
    path(
        "v1/organization/members",
        organization.MemberListView.as_view(),
        name="organization-members",
    ),
    path("v1/webhook", webhooks.WebhookView.as_view(), name="webhook"),
    path("v1/webhook/rotate", webhooks.WebhookRotateView.as_view(), name="webhook-rotate"),
    path(
        "v1/webhook/deliveries",
        webhooks.WebhookDeliveryListView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "v1/webhook/deliveries/<int:pk>/redeliver",
        webhooks.WebhookRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
    path("v1/credits", usage.CreditsView.as_view(), name="credits"),
    path("v1/usage", usage.UsageView.as_view(), name="usage-api"),
]
