"""Test settings: only overrides of imagehub.settings.

Tests run against the real PostgreSQL on 127.0.0.1 when it answers (CI always has it),
and against a SQLite file otherwise.
"""

import os
import socket
import tempfile
from pathlib import Path

from imagehub.settings import *  # noqa: F403
from imagehub.settings import DATABASES, LOGGING, STORAGES, database_config

# Fail fast instead of trying to reach a model hub this machine cannot reach.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEST_OUTPUT_DIR = Path(
    os.environ.get("IMAGEHUB_TEST_OUTPUT", tempfile.mkdtemp(prefix="imagehub-test-"))
)


def _postgres_reachable(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


if os.environ.get("DATABASE_URL"):
    pass  # the caller chose
elif _postgres_reachable():
    DATABASES["default"] = database_config("postgres://postgres@127.0.0.1:5432/imagehub")
else:
    DATABASES["default"]["TEST"] = {"NAME": str(TEST_OUTPUT_DIR / "test.sqlite3")}

MEDIA_ROOT = TEST_OUTPUT_DIR / "media"
if STORAGES["images"]["BACKEND"].endswith("FileSystemStorage"):
    STORAGES["images"] = {**STORAGES["images"], "OPTIONS": {"location": MEDIA_ROOT / "images"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SYNC_WAIT_SECONDS = 120.0
LOGGING["loggers"]["imagehub"]["level"] = "INFO"
