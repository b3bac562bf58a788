"""add_credits ORG AMOUNT: top an organization up (AMOUNT in micro-credits)."""

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accounts.ledger import credits_top_up
from accounts.models import Organization


class Command(BaseCommand):
    help = "Add AMOUNT micro-credits (1 credit = 1,000,000) to organization ORG (slug, name or id)."

    def add_arguments(self, parser):
        parser.add_argument("org")
        parser.add_argument("amount", type=int)
        parser.add_argument("--memo", default="add_credits")
        parser.add_argument(
            "--idempotency-key",
            help="a key of your own: running the command again with it adds nothing",
        )

    def handle(self, *args, org, amount, memo, idempotency_key, **options):
        if amount <= 0:
            raise CommandError("AMOUNT must be a positive number of micro-credits")
        lookup = Q(slug=org) | Q(name=org)
        if org.isdigit():
            lookup |= Q(pk=int(org))
        matches = list(Organization.objects.filter(lookup)[:2])
        if not matches:
            raise CommandError(f"no organization {org!r}")
        if len(matches) > 1:
            raise CommandError(f"{org!r} names several organizations; use the slug or id")
        organization = matches[0]
        entry = credits_top_up(
            organization=organization,
            amount=amount,
            memo=memo,
            idempotency_key=f"topup:{idempotency_key}" if idempotency_key else None,
        )
        if entry is None:
            self.stdout.write(f"already applied: {idempotency_key}; nothing added")
        else:
            self.stdout.write(
                f"added {amount} micro-credits to {organization.name}: "
                f"balance {organization.credit_balance}"
            )
