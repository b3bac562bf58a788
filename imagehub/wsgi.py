import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
application = get_wsgi_application()

# Only servers import this module: run what the apps asked to start with a server
# (the embedded default's worker threads, generations/worker/embedded.py).
from imagehub.broker import server_started  # noqa: E402

server_started()
