"""The ASGI application the web server runs (imagehub.server.Worker under gunicorn);
imagehub/asgi_app.py says what happens around Django there."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
django_application = get_asgi_application()

from imagehub.asgi_app import wrap  # noqa: E402

application = wrap(django_application)

# Only servers import this module: run what the apps asked to start with a server
# (the embedded default's worker threads, generations/worker/embedded.py).
from imagehub.broker import server_started  # noqa: E402

server_started()
