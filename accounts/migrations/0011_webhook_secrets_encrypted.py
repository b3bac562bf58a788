"""Webhook signing secrets encrypted at rest: the plain columns become encrypted ones and
every existing secret is encrypted under the configured key (accounts/webhooks/secrets.py)."""

from django.db import migrations, models


def encrypt_existing(apps, schema_editor):
    from accounts.webhooks import secrets
    from accounts.webhooks.signing import redacted

    WebhookEndpoint = apps.get_model("accounts", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.all().iterator():
        plain, previous = endpoint.secret_encrypted, endpoint.previous_secret_encrypted
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            secret_encrypted=secrets.encrypt(plain),
            secret_hint=redacted(plain),
            previous_secret_encrypted=secrets.encrypt(previous) if previous else "",
        )


def decrypt_existing(apps, schema_editor):
    from accounts.webhooks import secrets

    WebhookEndpoint = apps.get_model("accounts", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.all().iterator():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            secret_encrypted=secrets.decrypt(endpoint.secret_encrypted),
            previous_secret_encrypted=secrets.decrypt(endpoint.previous_secret_encrypted),
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0010_email_verification")]

    operations = [
        migrations.RenameField("webhookendpoint", "secret", "secret_encrypted"),
        migrations.RenameField("webhookendpoint", "previous_secret", "previous_secret_encrypted"),
        migrations.AlterField(
            model_name="webhookendpoint", name="secret_encrypted", field=models.TextField()
        ),
        migrations.AlterField(
            model_name="webhookendpoint",
            name="previous_secret_encrypted",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="webhookendpoint",
            name="secret_hint",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]
