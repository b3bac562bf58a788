"""Test settings: only overrides of imagehub.settings.

Tests run against the real PostgreSQL on 127.0.0.1 when it answers (CI always has it),
and against a SQLite file otherwise.

Runs keep apart from each other, so two clones' suites can share one PostgreSQL and one
Redis, and a clone can run its suite again at once: the test database is named after
the clone (test_imagehub_<hash of its path>; Django recreates it if a crashed run left
it, and drops it at the end), and whatever a run puts in Redis carries a key prefix of
its own (IMAGEHUB_CACHE_PREFIX, inherited by the processes the end-to-end tests start).
"""

import hashlib
import os
import socket
import tempfile
import uuid
from pathlib import Path

# Before imagehub.settings reads it. Rate-limit counters live a minute: a second run
# in the same minute (same key ids in a fresh database) must not see the first's.
CLONE_ID = hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:8]
os.environ.setdefault("IMAGEHUB_CACHE_PREFIX", f"imagehub-test-{CLONE_ID}-{uuid.uuid4().hex[:8]}")

from imagehub.settings import *  # noqa: E402,F403
from imagehub.settings import DATABASES, LOGGING, STORAGES, database_config  # noqa: E402

# Fail fast instead of trying to reach a model hub this machine cannot reach.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Screenshots, logs and media of the run: IMAGEHUB_TEST_OUTPUT (.ci/run keeps them in
# ./test-output), else a temporary folder of this run that the processes the tests start
# share (through the variable). Only named here: the test run creates it and deletes it
# at its end (tests/conftest.py), so a script that merely imports these settings
# (scripts/drop_test_database.py) leaves nothing behind.
if os.environ.get("IMAGEHUB_TEST_OUTPUT"):
    TEST_OUTPUT_DIR = Path(os.environ["IMAGEHUB_TEST_OUTPUT"])
    TEST_OUTPUT_IS_TEMPORARY = False
else:
    TEST_OUTPUT_DIR = Path(tempfile.gettempdir()) / f"imagehub-test-{CLONE_ID}-{os.getpid()}"
    os.environ["IMAGEHUB_TEST_OUTPUT"] = str(TEST_OUTPUT_DIR)
    TEST_OUTPUT_IS_TEMPORARY = True


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
if not DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{CLONE_ID}"}

MEDIA_ROOT = TEST_OUTPUT_DIR / "media"
if STORAGES["images"]["BACKEND"].endswith("FileSystemStorage"):
    STORAGES["images"] = {**STORAGES["images"], "OPTIONS": {"location": MEDIA_ROOT / "images"}}
ADAPTER_FILES_DIR = TEST_OUTPUT_DIR / "adapter-files"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SYNC_WAIT_SECONDS = 120.0
LOGGING["loggers"]["imagehub"]["level"] = "INFO"
# The embedded worker's recovery loop would race the test database's flush between tests
# (a deadlock); the recovery tests call generations.recovery.recover() themselves, and the
# chaos tests run real workers with their own settings.
RECOVERY_INTERVAL_SECONDS = 3600.0
# The model probe would write from a background thread too; tests call it themselves.
MODEL_PROBE_SECONDS = 0
