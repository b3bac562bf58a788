"""Re-encrypt every webhook signing secret under the first IMAGEHUB_SECRET_ENCRYPTION_KEY
(after putting a new key first; then the old one can be dropped)."""

from django.core.management.base import BaseCommand

from accounts.webhooks.endpoints import webhook_secrets_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every webhook signing secret under the first encryption key."

    def handle(self, *args, **options):
        count = webhook_secrets_reencrypt()
        self.stdout.write(f"re-encrypted the secrets of {count} webhook endpoint(s)")
