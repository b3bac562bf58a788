import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagehub.settings")
application = get_wsgi_application()

# Only servers import this module: start the embedded worker with the server.
from imagehub.broker import start_embedded_worker  # noqa: E402

start_embedded_worker()
