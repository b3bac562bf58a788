"""reconcile_ledger: exit non-zero if any balance disagrees with the ledger."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import CreditEntry, Organization
from accounts.reconcile import ledger_mismatches
from generations.selectors import held_work


class Command(BaseCommand):
    help = "Check every organization's balances and every generation's money against the ledger."

    def handle(self, *args, **options):
        problems = list(ledger_mismatches(held_work()))
        for line in problems:
            self.stderr.write(line)
        if problems:
            raise CommandError(f"{len(problems)} mismatch(es) between balances and the ledger")
        self.stdout.write(
            f"ledger reconciled: {Organization.objects.count()} organizations, "
            f"{CreditEntry.objects.count()} entries, no mismatch"
        )
