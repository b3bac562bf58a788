"""URLs of the web pages (the REST API's are in accounts/api/urls.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from accounts.views import auth, keys, members, signin, usage, webhooks
from accounts.views.forms import SignInForm

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="keys"), name="home"),
    # Signing in and out, password reset: Django's views, our templates.
    path(
        "login/",
        signin.LoginView.as_view(authentication_form=SignInForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", auth.signup, name="signup"),
    path("signup/sent/", auth.signup_sent, name="signup-sent"),
    path("verify-email/resend/", auth.verify_email_resend, name="verify-email-resend"),
    path("verify-email/<str:token>/", auth.verify_email, name="verify-email"),
    path("password-reset/", signin.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # The organization.
    path("keys/", keys.key_list, name="keys"),
    path("keys/<int:pk>/", keys.key_detail, name="key-detail"),
    path("keys/<int:pk>/rotate/", keys.key_rotate, name="key-rotate"),
    path("keys/<int:pk>/revoke/", keys.key_revoke, name="key-revoke"),
    path("members/", members.member_list, name="members"),
    path("members/<int:pk>/role/", members.member_role, name="member-role"),
    path("members/<int:pk>/remove/", members.member_remove, name="member-remove"),
    path("invitations/<int:pk>/revoke/", members.invitation_revoke, name="invitation-revoke"),
    path("invite/<str:token>/", auth.invitation_accept, name="invitation-accept"),
    path("organization/", members.organization_settings, name="organization"),
    path("organization/new/", auth.organization_new, name="organization-new"),
    path("organization/switch/", auth.switch_organization, name="organization-switch"),
    path("webhooks/", webhooks.webhook_page, name="webhooks"),
    path("webhooks/rotate/", webhooks.webhook_rotate, name="webhook-rotate-page"),
    path(
        "webhooks/deliveries/<int:pk>/redeliver/",
        webhooks.webhook_redeliver,
        name="webhook-redeliver-page",
    ),
    path("usage/", usage.usage_page, name="usage"),
    path("dashboard/", usage.operator_dashboard, name="operator-dashboard"),
]
