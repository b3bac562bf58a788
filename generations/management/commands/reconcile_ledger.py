"""reconcile_ledger [--fix]: exit non-zero if any balance disagrees with the ledger, or if
credits are held for a generation that no live worker is running (a stale hold).

--fix fails each stale hold's generation with `worker_lost`, which releases its credits
(the mismatches are reported, never "fixed": they need a person).
"""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import CreditEntry, Organization
from accounts.reconcile import ledger_mismatches
from generations.models import Generation
from generations.selectors import held_work, stale_holds
from generations.services import generation_fail


class Command(BaseCommand):
    help = (
        "Check every organization's balances and every generation's money against the "
        "ledger, and report credits held for generations no worker is running."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--fix",
            action="store_true",
            help="fail the generations of stale holds (code worker_lost), releasing them",
        )

    def handle(self, *args, fix: bool, **options):
        problems = []
        for generation in stale_holds():
            if fix:
                generation_fail(
                    generation_id=generation.id,
                    code="worker_lost",
                    message="No worker was running this generation; reconcile_ledger --fix "
                    "released the credits held for it.",
                )
                self.stdout.write(f"released the stale hold of {generation.id}")
            else:
                problems.append(_stale(generation))
        problems += ledger_mismatches(held_work())
        for line in problems:
            self.stderr.write(line)
        if problems:
            raise CommandError(f"{len(problems)} mismatch(es) between balances and the ledger")
        self.stdout.write(
            f"ledger reconciled: {Organization.objects.count()} organizations, "
            f"{CreditEntry.objects.count()} entries, no mismatch"
        )


def _stale(generation: Generation) -> str:
    since = generation.heartbeat_at or generation.started_at or generation.created_at
    return (
        f"stale hold: generation {generation.id} ({generation.status} since "
        f"{since:%Y-%m-%d %H:%M:%S} UTC) holds {generation.price} micro-credits; no worker "
        "is running it (run with --fix to release it)"
    )
