"""imagehub settings: one module, read from the environment, failing fast on bad values.

The defaults are the embedded set-up of `make run` (SQLite, in-process Dramatiq broker,
local files). Production sets DATABASE_URL, DRAMATIQ_BROKER_URL and STORAGE=s3.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from imagehub.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("IMAGEHUB_DATA_DIR", str(BASE_DIR / "data"))).resolve()

DEBUG = env_bool("DJANGO_DEBUG", False)


def _owner_only(path: Path, *, directory: bool) -> None:
    """The data dir (secrets, the SQLite file, images) and the SQLite file are readable by
    their owner only (0700 / 0600), whatever the umask."""
    try:
        if directory:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        if path.stat().st_uid == os.getuid():
            path.chmod(0o700 if directory else 0o600)
    except OSError:
        pass  # read-only or foreign: the operator's choice stands


_owner_only(DATA_DIR, directory=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, or one generated once and kept in the data dir."""
    value = env_str("DJANGO_SECRET_KEY")
    if value:
        return value
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(50)
    key_file.write_text(value)
    key_file.chmod(0o600)
    return value


SECRET_KEY = _secret_key()
# API keys are stored as HMAC-SHA256 digests under this secret. Changing it invalidates
# every key, so production should set it explicitly (and never rotate SECRET_KEY into it).
API_KEY_HMAC_SECRET = env_str("IMAGEHUB_API_KEY_SECRET", SECRET_KEY)


def _encryption_keys() -> list[str]:
    """IMAGEHUB_SECRET_ENCRYPTION_KEY: Fernet keys, comma-separated, the first encrypts
    (accounts/webhooks/secrets.py); empty = a key derived from SECRET_KEY."""
    keys = env_list("IMAGEHUB_SECRET_ENCRYPTION_KEY", [])
    for key in keys:
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (ValueError, binascii.Error):
            valid = False
        if not valid:
            raise ImproperlyConfigured(
                "IMAGEHUB_SECRET_ENCRYPTION_KEY holds a key that is not a Fernet key (32 "
                'url-safe base64 bytes): make one with `python -c "from cryptography.fernet '
                'import Fernet; print(Fernet.generate_key().decode())"`.'
            )
    return keys


# Webhook signing secrets are stored encrypted under these keys (rotatable: new key first).
SECRET_ENCRYPTION_KEYS = _encryption_keys()

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_HTTPS_PROXY", False) else None
)
_BEHIND_TLS = SECURE_PROXY_SSL_HEADER is not None
# Cookies over HTTPS only: on by default behind a TLS-terminating proxy.
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", _BEHIND_TLS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_COOKIE_HTTPONLY = True
# HSTS (sent on HTTPS responses only) and the redirect of plain HTTP to HTTPS: on by
# default behind a TLS-terminating proxy. /healthz and /readyz are answered before both.
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if _BEHIND_TLS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", _BEHIND_TLS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", _BEHIND_TLS)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", _BEHIND_TLS)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# The pages and the docs load scripts, styles, fonts and images from this origin only
# (no inline script; the docs' viewers add inline styles). imagehub.middleware sets it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("IMAGEHUB_SESSION_SECONDS", 14 * 24 * 3600, minimum=60)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sign-in throttling (accounts/ratelimit.py): django-axes counts failures per account
# *and* client address (an attacker's failures never lock the user out at their own
# address), keyed by the NFKC, case-folded address; every door into authenticate() goes
# through it, /admin/login/ included. Past the limit: 429 and a wait of the cool-off.
AUTHENTICATION_BACKENDS = [
    "accounts.ratelimit.SignInBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env_int("IMAGEHUB_SIGNIN_FAILURES_PER_ACCOUNT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("IMAGEHUB_SIGNIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "accounts.ratelimit.axes_username"
AXES_LOCKOUT_CALLABLE = "accounts.views.signin.lockout_response"
AXES_VERBOSE = False
# Failed sign-ins from one client address, across accounts, per 15 minutes (spraying).
SIGNIN_FAILURES_PER_ADDRESS = env_int("IMAGEHUB_SIGNIN_FAILURES_PER_ADDRESS", 30, minimum=1)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "keys"
LOGOUT_REDIRECT_URL = "login"
# Password-reset and invitation emails. Console (printed to the log) in development;
# production sets e.g. IMAGEHUB_EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend
# with EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS.
EMAIL_BACKEND = env_str("IMAGEHUB_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "imagehub <noreply@localhost>")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "storages",
    "axes",
    "accounts",
    "generations",
]

MIDDLEWARE = [
    "imagehub.metrics.MetricsMiddleware",
    "imagehub.middleware.RequestIdMiddleware",
    "imagehub.middleware.ContentSecurityPolicyMiddleware",
    # /healthz and /readyz answer before the Host header is checked (probes come by IP).
    "imagehub.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the pages' stylesheet and script under gunicorn too (make run).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Answers a sign-in refused by the throttle with the 429 page (accounts/ratelimit.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "imagehub.urls"
WSGI_APPLICATION = "imagehub.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.views.context_processors.navigation",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'imagehub.sqlite3'}")
DB_POOL_SIZE = env_int("IMAGEHUB_DB_POOL_SIZE", 16, minimum=1)


def database_config(url: str) -> dict:
    try:
        config = dj_database_url.parse(url)
    except Exception as exc:  # dj_database_url raises several types for a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
    if config["ENGINE"].endswith("sqlite3"):
        if config.get("NAME") and config["NAME"] != ":memory:":
            _owner_only(Path(config["NAME"]), directory=False)
        # Worker threads and request threads write concurrently: WAL + a busy timeout
        # keep SQLite from answering "database is locked" under the embedded default.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif config["ENGINE"].endswith("postgresql"):
        # Django's backend, with a pool that replaces all its dead connections at once
        # after a database blip (imagehub/postgresql/base.py).
        config["ENGINE"] = "imagehub.postgresql"
        # A pool per process: hundreds of requests waiting on generations share a few
        # connections (a waiting request hands its connection back; see views._wait).
        config["OPTIONS"] = {
            **config.get("OPTIONS", {}),
            "pool": {"min_size": 1, "max_size": DB_POOL_SIZE, "timeout": 30},
        }
    config["CONN_MAX_AGE"] = 0
    # With the pool, Django then has the pool test each connection before handing it out
    # (ConnectionPool.check_connection): a connection dropped by a failover or a PgBouncer
    # restart never reaches a request.
    config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES = {"default": database_config(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- broker, notifications -------------------------------------------------------------
# Unset: an in-process StubBroker with worker threads inside the web process.
DRAMATIQ_BROKER_URL = env_str("DRAMATIQ_BROKER_URL")
if DRAMATIQ_BROKER_URL and not DRAMATIQ_BROKER_URL.startswith(
    ("redis://", "rediss://", "amqp://", "amqps://")
):
    raise ImproperlyConfigured("DRAMATIQ_BROKER_URL must start with redis:// or amqp://")
DRAMATIQ_QUEUE = env_str("IMAGEHUB_QUEUE", "gpu")
# Dynamic batching: text-to-image requests for the same model and parameters that are
# waiting at the same time run as one pipeline call (generations/engine/batcher.py). The
# batcher waits up to BATCH_WAIT_MS after a job arrives for companions.
BATCHING = env_bool("IMAGEHUB_BATCHING", True)
BATCH_WAIT_MS = env_int("IMAGEHUB_BATCH_WAIT_MS", 10, minimum=0)
# A worker thread claims a job only while fewer than this many images it claimed wait
# for the device (one without batching): a batch runs, the next forms behind it, and
# every other job stays queued, where fair share chooses among them when the device has
# room (generations/worker/runtime.py). One batch: the models' max_batch_images.
BATCH_LOOKAHEAD_IMAGES = env_int("IMAGEHUB_BATCH_LOOKAHEAD_IMAGES", 8, minimum=1)
# Worker threads per worker process (runworker --threads, and the in-process broker's of
# the embedded default): the jobs of one batch running and of the next forming, plus
# threads that encode, store and settle finished jobs while the device runs.
WORKER_THREADS = min(2 * BATCH_LOOKAHEAD_IMAGES, 64) if BATCHING else 3
INPROCESS_WORKER_THREADS = env_int("IMAGEHUB_INPROCESS_WORKERS", WORKER_THREADS, minimum=1)
# Memory the pipeline cache may fill before it evicts the least recently used model;
# 0 = 80% of the free device memory on CUDA, of the total RAM on CPU.
MODEL_MEMORY_MB = env_int("IMAGEHUB_MODEL_MEMORY_MB", 0, minimum=0)
# Where completion notices travel from workers to waiting web requests:
# "auto" = Redis pub/sub when a Redis URL is known, PostgreSQL LISTEN/NOTIFY on
# PostgreSQL, in-process otherwise.
NOTIFY_BACKEND = env_choice("IMAGEHUB_NOTIFY", "auto", {"auto", "redis", "postgres", "local"})
REDIS_URL = env_str(
    "REDIS_URL", DRAMATIQ_BROKER_URL if DRAMATIQ_BROKER_URL.startswith("redis") else ""
)

# --- generations ------------------------------------------------------------------------
SYNC_WAIT_SECONDS = env_float("IMAGEHUB_SYNC_WAIT_SECONDS", 300.0, minimum=0.1)
GENERATION_TIME_LIMIT_SECONDS = env_int("IMAGEHUB_JOB_TIME_LIMIT", 600, minimum=1)
# Durable jobs (generations/worker/liveness.py). A running job's worker renews its
# heartbeat every HEARTBEAT seconds; after TAKEOVER seconds of silence another worker
# takes the job over (up to MAX_ATTEMPTS claims, then it fails with `worker_lost`). Every
# worker checks for such jobs every RECOVERY_INTERVAL seconds, and sends again a queued
# job whose message may be lost REDISPATCH seconds after it was sent (doubling each
# time). A job still queued after QUEUE_TIMEOUT seconds fails with `queue_timeout`.
GENERATION_HEARTBEAT_SECONDS = env_float("IMAGEHUB_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
GENERATION_TAKEOVER_SECONDS = env_float("IMAGEHUB_TAKEOVER_SECONDS", 20.0, minimum=0.5)
GENERATION_MAX_ATTEMPTS = env_int("IMAGEHUB_JOB_MAX_ATTEMPTS", 3, minimum=1)
RECOVERY_INTERVAL_SECONDS = env_float("IMAGEHUB_RECOVERY_INTERVAL_SECONDS", 5.0, minimum=0.1)
GENERATION_REDISPATCH_SECONDS = env_float("IMAGEHUB_REDISPATCH_SECONDS", 60.0, minimum=1.0)
GENERATION_QUEUE_TIMEOUT_SECONDS = env_int("IMAGEHUB_QUEUE_TIMEOUT_SECONDS", 3600, minimum=1)
# Every worker checks, when it starts and then this often, that it can load each model of
# its queues (files on disk, or the model hub reachable); the API refuses with a 503 and
# /v1/models marks a model that no worker can load. 0 = check only when a load fails.
MODEL_PROBE_SECONDS = env_int("IMAGEHUB_MODEL_PROBE_SECONDS", 300, minimum=0)
# Fair share between organizations (generations/fairness.py): how far back the jobs an
# organization started count as "served".
FAIR_SHARE_WINDOW_SECONDS = env_int("IMAGEHUB_FAIR_SHARE_WINDOW_SECONDS", 300, minimum=1)
if GENERATION_TAKEOVER_SECONDS < 2 * GENERATION_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "IMAGEHUB_TAKEOVER_SECONDS must be at least twice IMAGEHUB_HEARTBEAT_SECONDS, or "
        "live jobs would be taken over between two heartbeats."
    )
DEMO_MODELS_DIR = Path(env_str("IMAGEHUB_DEMO_MODELS_DIR", str(DATA_DIR / "models"))).resolve()
# JSON file whose entries replace or extend the built-in catalog (generations/catalog.py).
MODEL_CATALOG_FILE = env_str("IMAGEHUB_MODEL_CATALOG")
DEFAULT_MODEL = env_str("IMAGEHUB_DEFAULT_MODEL", "demo-sd")
# Uploaded images for edits and variations: bytes per file, and decoded pixels per file
# (Pillow's decompression-bomb guard is set from this; a larger image is a 400).
MAX_IMAGE_BYTES = env_int("IMAGEHUB_MAX_IMAGE_BYTES", 20 * 1024 * 1024, minimum=1024)
MAX_IMAGE_PIXELS = env_int("IMAGEHUB_MAX_IMAGE_PIXELS", 4096 * 4096, minimum=64 * 64)
# All the input images of one edit or variation together (each is decoded and priced).
MAX_INPUT_PIXELS = env_int("IMAGEHUB_MAX_INPUT_PIXELS", 2 * 4096 * 4096, minimum=64 * 64)
DEVICE = env_str("IMAGEHUB_DEVICE", "auto")
# LoRA adapters (generations/adapters/): the largest file an organization may upload,
# the most adapters one request may name, the surcharge per image for each adapter used
# when the operator set none for it or its model (micro-credits; admin: Adapter prices),
# the device memory a worker keeps recently used adapters in (part of the model cache's
# budget; 0 = 10% of it) and where it keeps their files.
MAX_ADAPTER_BYTES = env_int("IMAGEHUB_MAX_ADAPTER_BYTES", 512 * 1024 * 1024, minimum=1024)
MAX_ADAPTERS_PER_REQUEST = env_int("IMAGEHUB_MAX_ADAPTERS_PER_REQUEST", 3, minimum=1)
ADAPTER_PRICE_PER_IMAGE = env_int("IMAGEHUB_ADAPTER_PRICE_PER_IMAGE", 0, minimum=0)
ADAPTER_MEMORY_MB = env_int("IMAGEHUB_ADAPTER_MEMORY_MB", 0, minimum=0)
ADAPTER_FILES_DIR = Path(
    env_str("IMAGEHUB_ADAPTER_FILES_DIR", str(DATA_DIR / "adapter-files"))
).resolve()
# Models a worker loads at start-up, before taking jobs (comma-separated catalog ids).
WARMUP_MODELS = env_list("IMAGEHUB_WARMUP_MODELS", [])
SIGNED_URL_TTL_SECONDS = env_int("IMAGEHUB_URL_TTL_SECONDS", 3600, minimum=1)
# The public base URL used in `url` responses; empty = taken from the request.
PUBLIC_BASE_URL = env_str("IMAGEHUB_PUBLIC_URL").rstrip("/")

# --- webhooks (accounts/webhooks.py) ----------------------------------------------------
# Deliveries to private, loopback, link-local, multicast or reserved addresses are refused
# unless this is set (a receiver on the same host or network, tests).
WEBHOOK_ALLOW_PRIVATE = env_bool("IMAGEHUB_WEBHOOK_ALLOW_PRIVATE", False)
# Per attempt: connect and read timeout, and the most bytes of the answer read.
WEBHOOK_TIMEOUT_SECONDS = env_float("IMAGEHUB_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
WEBHOOK_MAX_RESPONSE_BYTES = env_int("IMAGEHUB_WEBHOOK_MAX_RESPONSE_BYTES", 65536, minimum=0)
# A failed delivery is tried again after BASE seconds, doubling up to MAX, for WINDOW hours.
WEBHOOK_RETRY_BASE_SECONDS = env_float("IMAGEHUB_WEBHOOK_RETRY_BASE_SECONDS", 5.0, minimum=0.1)
WEBHOOK_RETRY_MAX_SECONDS = env_float("IMAGEHUB_WEBHOOK_RETRY_MAX_SECONDS", 3600.0, minimum=1.0)
WEBHOOK_RETRY_WINDOW_HOURS = env_float("IMAGEHUB_WEBHOOK_RETRY_WINDOW_HOURS", 24.0, minimum=0.0)
# Threads per process that send deliveries.
WEBHOOK_SENDER_THREADS = env_int("IMAGEHUB_WEBHOOK_SENDER_THREADS", 4, minimum=1)
# Finished deliveries (and their bodies) are deleted after this many days.
WEBHOOK_RETENTION_DAYS = env_int("IMAGEHUB_WEBHOOK_RETENTION_DAYS", 30, minimum=1)

# --- retention (README, "Retention"; `manage.py purge`, run by the workers too) ----------
# Generated images, uploaded inputs and stream previews are deleted from storage this
# many days after their generation was created; the record stays (status, price, usage)
# and its images answer 410.
IMAGE_RETENTION_DAYS = env_int("IMAGEHUB_IMAGE_RETENTION_DAYS", 30, minimum=1)
# Generation records (prompt, parameters, status) are deleted after this many days. The
# ledger entries that name them, the monthly totals and the usage rollups are kept.
GENERATION_RETENTION_DAYS = env_int("IMAGEHUB_GENERATION_RETENTION_DAYS", 400, minimum=1)
# Idempotency keys are answered, then forgotten, after this many hours.
IDEMPOTENCY_RETENTION_HOURS = env_int("IMAGEHUB_IDEMPOTENCY_RETENTION_HOURS", 24, minimum=1)
# Moderation block records (stage, categories, key, prompt for review) are deleted after
# this many days (generations/moderation/, README "Moderation").
MODERATION_RETENTION_DAYS = env_int("IMAGEHUB_MODERATION_RETENTION_DAYS", 30, minimum=1)
# How often a worker runs the purge (one worker at a time), and rows per batch: each
# batch is its own short transaction.
PURGE_INTERVAL_SECONDS = env_int("IMAGEHUB_PURGE_INTERVAL_SECONDS", 600, minimum=0)
PURGE_BATCH_SIZE = env_int("IMAGEHUB_PURGE_BATCH_SIZE", 1000, minimum=1)

# GET /metrics asks for `Authorization: Bearer <token>` when this is set.
METRICS_TOKEN = env_str("IMAGEHUB_METRICS_TOKEN")

# --- moderation (README, "Moderation"; generations/moderation/) ------------------------
# The operator's content policy, a JSON file read and validated at start-up (a bad file
# stops start-up). Unset: moderation is off, nothing is checked and nothing is loaded.
MODERATION_POLICY_FILE = env_str("IMAGEHUB_MODERATION_POLICY")
# A key blocked more than this many times within an hour is suspended (403 key_suspended)
# until the operator lifts it in the admin; 0: never suspend.
MODERATION_SUSPEND_AFTER = env_int("IMAGEHUB_MODERATION_SUSPEND_AFTER", 20, minimum=0)
# Threads per web process that run the text (and input image) classifiers.
MODERATION_CLASSIFIER_THREADS = env_int("IMAGEHUB_MODERATION_CLASSIFIER_THREADS", 2, minimum=1)

# --- limits and money -------------------------------------------------------------------
# Requests per minute for keys and organizations that set no limit; 0 = unlimited.
DEFAULT_RPM_LIMIT = env_int("IMAGEHUB_DEFAULT_RPM_LIMIT", 0, minimum=0)
# Micro-credits (1 credit = 1,000,000) given as a top-up in the ledger to an organization
# the operator creates, and once per verified email address to the first organization
# that person owns (accounts/verification.py); 0 = none.
STARTING_CREDITS = env_int("IMAGEHUB_STARTING_CREDITS", 0, minimum=0)
# Organizations one person may own (create) at most; the operator's are not counted.
MAX_ORGS_PER_USER = env_int("IMAGEHUB_MAX_ORGS_PER_USER", 5, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "imagehub <noreply@localhost>")
# Rate-limit counters must be shared by every web process: Redis when there is one.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Processes sharing a Redis keep apart by prefix (each test run uses its own).
            "KEY_PREFIX": env_str("IMAGEHUB_CACHE_PREFIX", "imagehub"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Sign-in failures must be counted once for every web process too: in Redis when there is
# one, else in the database (axes' AccessAttempt rows, shown in the admin).
AXES_HANDLER = (
    "axes.handlers.cache.AxesCacheHandler"
    if REDIS_URL
    else "axes.handlers.database.AxesDatabaseHandler"
)
AXES_ENABLE_ADMIN = not REDIS_URL

# --- storage -----------------------------------------------------------------------------
MEDIA_ROOT = Path(env_str("IMAGEHUB_MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
# WhiteNoise finds static files in the apps directly, so no collectstatic step is needed
# (STATIC_ROOT is used only if someone runs it; its absence is not worth a warning).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
warnings.filterwarnings("ignore", message="No directory at: ")
STORAGE = env_choice("STORAGE", "local", {"local", "s3"})
if STORAGE == "s3":
    bucket = env_str("AWS_STORAGE_BUCKET_NAME")
    if not bucket:
        raise ImproperlyConfigured("STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
    _images_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "location": env_str("AWS_LOCATION", "images"),
            "querystring_auth": True,
            "querystring_expire": SIGNED_URL_TTL_SECONDS,
            "signature_version": "s3v4",
            "file_overwrite": False,
            "default_acl": None,
        },
    }
else:
    _images_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT / "images", "base_url": None},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "images": _images_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- HTTP limits ----------------------------------------------------------------------------
# Bodies above this get 413 (uploads for edits arrive as files, limited separately).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("IMAGEHUB_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# Slow clients (imagehub.server, imagehub.asgi_app): a request's headers must arrive within
# this many seconds of its first byte (else 408), and a body may pause at most this long
# between two reads (else 408).
HEADER_TIMEOUT_SECONDS = env_float("IMAGEHUB_HEADER_TIMEOUT_SECONDS", 10.0, minimum=0.1)
BODY_TIMEOUT_SECONDS = env_float("IMAGEHUB_BODY_TIMEOUT_SECONDS", 30.0, minimum=0.1)
# Requests that run Django code at once in one web process (each in a thread, most with
# a database connection); more wait on the event loop, costing no thread. Requests
# waiting for their images do not count (imagehub.asgi_app).
WEB_CONCURRENCY = env_int("IMAGEHUB_WEB_CONCURRENCY", 16, minimum=1)

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.api.authentication.BearerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.authentication.HasAPIKey"],
    "DEFAULT_PARSER_CLASSES": ["imagehub.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["imagehub.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "imagehub.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # `?format=` is ours (GET /v1/usage?format=csv), not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "imagehub API",
    "DESCRIPTION": "OpenAI-compatible image generation on your own GPUs.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per choice set used in several places (dotted paths, not imports).
    "ENUM_NAME_OVERRIDES": {
        "WebhookEventEnum": "accounts.webhooks.events.EVENTS",
        "WebhookDeliveryStatusEnum": "accounts.webhooks.models.WebhookDelivery.Status",
        "APIKeyStatusEnum": ["active", "expired", "revoked"],
    },
    # Every error status in OpenAI's envelope, CSV and SSE media types (imagehub/openapi.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "imagehub.openapi.add_errors_and_media_types",
        # Limits of image requests from the catalog (a dotted path, not an import).
        "generations.api.schema.add_request_limits",
    ],
}

# --- i18n, logging -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOG_LEVEL = env_str("IMAGEHUB_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {
        "one_line": {"()": "imagehub.errors.OneLine"},
        # transformers says so once per image-processor class that diffusers' pipelines
        # import (CLIP, SigLIP, ...), in every process: torchvision is no dependency of
        # ours, and the PIL processors it falls back to are what we want.
        "torchvision_fallback": {
            "()": "imagehub.logfilters.DropMessages",
            "contains": ["requires torchvision (not installed); falling back to"],
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "console_one_line": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["one_line"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # A bad Host header is the client's mistake: one line, no traceback.
        "django.security.DisallowedHost": {
            "handlers": ["console_one_line"],
            "level": "WARNING",
            "propagate": False,
        },
        "imagehub": {"level": LOG_LEVEL},
        "generations": {"level": LOG_LEVEL},
        "accounts": {"level": LOG_LEVEL},
        "dramatiq": {"level": "WARNING"},
        # No level, no handlers: transformers' own handler and level stay as they are.
        "transformers.utils.import_utils": {"filters": ["torchvision_fallback"]},
    },
}
MAX_UPLOAD_BYTES = env_int("IMAGEHUB_MAX_UPLOAD_BYTES", 50 * 1024 * 1024, minimum=1024)
# `response_format` when a request names none (OpenAI's gpt-image models always answer
# b64_json; set "url" for clients written for dall-e).
DEFAULT_RESPONSE_FORMAT = env_choice(
    "IMAGEHUB_DEFAULT_RESPONSE_FORMAT", "b64_json", {"b64_json", "url"}
)
# Longest wait of an idle worker's consumer before it looks at the broker again. A message
# wakes a waiting Redis consumer at once (imagehub/redis_broker.py); this bounds how late a
# message whose wake-up was lost is fetched, how often delayed messages are checked, and
# how long a stopping worker waits for its consumers.
WORKER_POLL_MS = env_int("IMAGEHUB_WORKER_POLL_MS", 1000, minimum=1)
