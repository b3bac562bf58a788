"""System checks of the accounts app (`manage.py check --deploy`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def webhook_secrets_key(app_configs, **kwargs) -> list[Warning]:
    """Webhook signing secrets are encrypted at rest (accounts/webhooks/secrets.py).
    Without IMAGEHUB_SECRET_ENCRYPTION_KEY the key is derived from SECRET_KEY, so a
    deployment that rotates SECRET_KEY can no longer read them: every delivery would fail
    to be signed until each endpoint's secret is rolled."""
    if settings.SECRET_ENCRYPTION_KEYS:
        return []
    return [
        Warning(
            "Webhook signing secrets are encrypted with a key derived from SECRET_KEY: "
            "changing SECRET_KEY would make them unreadable.",
            hint='Set IMAGEHUB_SECRET_ENCRYPTION_KEY to a Fernet key (python -c "from '
            'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"), '
            "then run `manage.py encrypt_webhook_secrets` to re-encrypt the stored ones.",
            id="imagehub.W001",
        )
    ]
