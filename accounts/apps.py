from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The per-address count of failed sign-ins (accounts/ratelimit.py), beside axes'
        # own receiver of the same signal: every door into authenticate() is counted.
        from django.contrib.auth.signals import user_login_failed

        from accounts.ratelimit import signin_failed

        user_login_failed.connect(signin_failed, dispatch_uid="imagehub-signin-failed")
