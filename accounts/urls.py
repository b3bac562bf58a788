from django.urls import path

from accounts import api, usage_api

urlpatterns = [
    path("v1/keys", api.KeyListView.as_view(), name="api-keys"),
    path("v1/keys/<int:pk>", api.KeyDetailView.as_view(), name="api-key-detail"),
    path("v1/keys/<int:pk>/rotate", api.KeyRotateView.as_view(), name="api-key-rotate"),
    path("v1/organization", api.OrganizationView.as_view(), name="organization"),
    path("v1/organization/members", api.MemberListView.as_view(), name="organization-members"),
    path("v1/webhook", api.WebhookView.as_view(), name="webhook"),
    path("v1/webhook/rotate", api.WebhookRotateView.as_view(), name="webhook-rotate"),
    path("v1/webhook/deliveries", api.WebhookDeliveryListView.as_view(), name="webhook-deliveries"),
    path(
        "v1/webhook/deliveries/<int:pk>/redeliver",
        api.WebhookRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
    path("v1/credits", usage_api.CreditsView.as_view(), name="credits"),
    path("v1/usage", usage_api.UsageView.as_view(), name="usage-api"),
]
