"""purge [--only NAME ...] [--batch-size N] [--list]: delete what is past its retention
(imagehub/retention.py), in batches of short transactions; prints rows deleted per kind.
The workers run the same purge every IMAGEHUB_PURGE_INTERVAL_SECONDS."""

from django.core.management.base import BaseCommand, CommandError

from accounts.usage_days import usage_days_summarize_recent
from imagehub import retention


class Command(BaseCommand):
    help = "Delete images, records, deliveries and keys past their retention, in batches."

    def add_arguments(self, parser):
        parser.add_argument("--only", nargs="+", metavar="NAME", help="only these purges")
        parser.add_argument("--batch-size", type=int, help="rows per batch (transaction)")
        parser.add_argument("--list", action="store_true", help="list the purges and stop")

    def handle(self, *args, only, batch_size, list: bool, **options):
        names = [purge.name for purge in retention.purges()]
        if list:
            for purge in retention.purges():
                self.stdout.write(f"{purge.name}: {purge.keeps}")
            return
        unknown = sorted(set(only or ()) - set(names))
        if unknown:
            raise CommandError(f"no purge named {', '.join(unknown)} (known: {', '.join(names)})")
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        with retention.exclusively("purge") as held:
            if not held:
                raise CommandError("another purge is running (a worker's); try again later")
            done = retention.purge_all(batch_size=batch_size, only=only)
            usage_days_summarize_recent()
        for name, deleted in done.items():
            self.stdout.write(f"{name}: {deleted} deleted")
