"""reconcile_ledger [--fix] [--organization SLUG] [--since DATE] [--until DATE]: exit
non-zero if any balance disagrees with the ledger, or if credits are held for a
generation that no live worker is running (a stale hold).

--fix fails each stale hold's generation with `worker_lost`, which releases its credits
(the mismatches are reported, never "fixed": they need a person).

It streams: generations are read with a server-side cursor a chunk at a time and each
chunk is checked against the ledger entries of its own references; balances and monthly
totals are summed in the database. Memory stays flat whatever the size of the tables.
"""

import datetime as dt
import sys
from itertools import islice

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from accounts.ledger import month_of
from accounts.models import CreditEntry, MonthlySpend, Organization
from accounts.reconcile import (
    balance_mismatches,
    generation_mismatches,
    monthly_totals_mismatches,
)
from generations.lifecycle import generation_fail
from generations.models import Generation
from generations.selectors import held_generations, held_work, monthly_committed, stale_holds

CHUNK = 2000


def _date(value: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from None


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
        parser.add_argument("--organization", metavar="SLUG", help="check one organization")
        parser.add_argument(
            "--since", metavar="DATE", help="only generations created on or after DATE (UTC)"
        )
        parser.add_argument(
            "--until", metavar="DATE", help="only generations created before DATE (UTC)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, fix: bool, organization, since, until, no_progress, **options):
        org = None
        if organization:
            org = Organization.objects.filter(slug=organization).first()
            if org is None:
                raise CommandError(f"no organization with slug {organization!r}")
        since = _date(since) if since else None
        until = _date(until) if until else None
        problems = list(self._stale_holds(fix, org))
        problems += balance_mismatches(org.pk if org else None)
        rows = held_generations(organization_id=org.pk if org else None, since=since, until=until)
        progress = tqdm(
            total=rows.count(),
            unit="gen",
            desc="generations",
            disable=no_progress or options["verbosity"] == 0,
            file=sys.stderr,
        )
        work = held_work(rows, chunk_size=CHUNK)
        while chunk := list(islice(work, CHUNK)):
            problems += generation_mismatches(chunk)
            progress.update(len(chunk))
        progress.close()
        problems += self._monthly(org, since, until)
        for line in problems:
            self.stderr.write(line)
        if problems:
            raise CommandError(f"{len(problems)} mismatch(es) between balances and the ledger")
        entries = CreditEntry.objects.filter(organization=org) if org else CreditEntry.objects
        self.stdout.write(
            f"ledger reconciled: {1 if org else Organization.objects.count()} organizations, "
            f"{entries.count()} entries, no mismatch"
        )

    def _stale_holds(self, fix: bool, org):
        for generation in stale_holds():
            if org is not None and generation.organization_id != org.pk:
                continue
            if fix:
                generation_fail(
                    generation_id=generation.id,
                    code="worker_lost",
                    message="No worker was running this generation; reconcile_ledger --fix "
                    "released the credits held for it.",
                )
                self.stdout.write(f"released the stale hold of {generation.id}")
            else:
                yield _stale(generation)

    def _monthly(self, org, since, until):
        """The monthly totals of the whole months the window touches, and only of months
        whose generations are all still kept (records are purged after
        IMAGEHUB_GENERATION_RETENTION_DAYS; the totals and the ledger stay)."""
        kept_since = timezone.now() - dt.timedelta(days=settings.GENERATION_RETENTION_DAYS)
        first = month_of(kept_since)
        first = first if kept_since <= _month_start(first) else _next_month(first)
        if since is not None:
            first = max(first, month_of(since))
        start = _month_start(first)
        end = (
            _month_start(_next_month(month_of(until - dt.timedelta(microseconds=1))))
            if until
            else None
        )
        rows = held_generations(organization_id=org.pk if org else None, since=start, until=end)
        stored = MonthlySpend.objects.filter(month__gte=first)
        if end is not None:
            stored = stored.filter(month__lt=end.date())
        if org is not None:
            stored = stored.filter(organization=org)
        return list(monthly_totals_mismatches(monthly_committed(rows), stored))


def _month_start(month: dt.date) -> dt.datetime:
    return dt.datetime.combine(month, dt.time(), tzinfo=dt.UTC)


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _stale(generation: Generation) -> str:
    since = generation.heartbeat_at or generation.started_at or generation.created_at
    return (
        f"stale hold: generation {generation.id} ({generation.status} since "
        f"{since:%Y-%m-%d %H:%M:%S} UTC) holds {generation.price} micro-credits; no worker "
        "is running it (run with --fix to release it)"
    )
