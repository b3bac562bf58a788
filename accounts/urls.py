from django.urls import path

from accounts import api

urlpatterns = [
    path("v1/keys", api.KeyListView.as_view(), name="api-keys"),
    path("v1/keys/<int:pk>", api.KeyDetailView.as_view(), name="api-key-detail"),
    path("v1/keys/<int:pk>/rotate", api.KeyRotateView.as_view(), name="api-key-rotate"),
    path("v1/organization", api.OrganizationView.as_view(), name="organization"),
    path("v1/organization/members", api.MemberListView.as_view(), name="organization-members"),
]
