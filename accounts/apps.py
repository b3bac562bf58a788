from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The per-address count of failed sign-ins (accounts/ratelimit.py), beside axes'
        # own receiver of the same signal: every door into authenticate() is counted.
        from django.contrib.auth.signals import user_login_failed

        from accounts import checks  # noqa: F401 - registers the deploy checks
        from accounts.ratelimit import signin_failed

        user_login_failed.connect(signin_failed, dispatch_uid="imagehub-signin-failed")

        from accounts.idempotency import idempotency_purge_batch
        from accounts.webhooks.delivery import deliveries_purge_batch
        from imagehub import retention

        retention.register(
            "webhook_deliveries",
            deliveries_purge_batch,
            keeps="finished webhook deliveries: IMAGEHUB_WEBHOOK_RETENTION_DAYS",
        )
        retention.register(
            "idempotency_keys",
            idempotency_purge_batch,
            keeps="Idempotency-Key records: IMAGEHUB_IDEMPOTENCY_RETENTION_HOURS",
        )
