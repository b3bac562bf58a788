"""Entry module for `dramatiq imagehub.worker`: sets Django up, which declares the actors.

Run it through `manage.py runworker`, which passes the right queues and thread counts.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
django.setup()

from imagehub.broker import broker  # noqa: E402,F401  (dramatiq looks for it here)
