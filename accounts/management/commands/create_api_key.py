"""create_api_key EMAIL [--org NAME] [--credits N]: prints the new secret on the last line."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.models import APIKey
from accounts.services import api_key_provision


class Command(BaseCommand):
    help = (
        "Create an API key for EMAIL in organization NAME, creating the user, the "
        "organization and the membership if they are missing. The secret is printed "
        "alone on the last line and cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument(
            "--org",
            help="organization name (default: the user's first, or one named after the email)",
        )
        parser.add_argument(
            "--credits", type=int, default=0, help="micro-credits to top up the organization with"
        )
        parser.add_argument("--name", default="", help="a label for the key")
        parser.add_argument(
            "--scope", choices=[s.value for s in APIKey.Scope], default=APIKey.Scope.GENERATE
        )

    def handle(self, *args, email, org, credits, name, scope, **options):
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"{email!r} is not a valid email address") from None
        if credits < 0:
            raise CommandError("--credits must not be negative")
        made = api_key_provision(
            email=email, organization_name=org, credits=credits, name=name or "cli", scope=scope
        )
        organization = made.organization
        if made.user_created:
            self.stdout.write(f"created user {made.user.email}")
        if made.organization_created:
            self.stdout.write(f"created organization {organization.name} ({organization.slug})")
        if credits:
            self.stdout.write(
                f"topped up {organization.name} by {credits} "
                f"(balance {organization.credit_balance})"
            )
        self.stdout.write(
            f"created {scope} key {made.key.redacted} (id {made.key.pk}) for {organization.name}"
        )
        self.stdout.write(made.secret)
