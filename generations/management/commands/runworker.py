"""runworker: start Dramatiq GPU workers on the configured broker.

    manage.py runworker [--processes N] [--threads N] [--queues gpu]

Each process loads its pipelines once and keeps them. One process per GPU: pin it with
CUDA_VISIBLE_DEVICES or IMAGEHUB_DEVICE=cuda:N.
"""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run Dramatiq worker processes that execute generations."

    def add_arguments(self, parser):
        parser.add_argument("--processes", type=int, default=1)
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--queues", nargs="+", default=[settings.DRAMATIQ_QUEUE])

    def handle(self, *args, processes, threads, queues, **options):
        if not settings.DRAMATIQ_BROKER_URL:
            raise CommandError(
                "DRAMATIQ_BROKER_URL is not set: with the embedded default the web process "
                "runs its own worker threads. Set redis://… or amqp://… to run workers apart."
            )
        argv = [
            sys.executable,
            "-m",
            "dramatiq",
            "imagehub.worker",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            *queues,
        ]
        self.stdout.write(
            f"starting {processes} worker process(es) x {threads} thread(s) on {', '.join(queues)}"
        )
        sys.stdout.flush()
        os.execv(sys.executable, argv)
