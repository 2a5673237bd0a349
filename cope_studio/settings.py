"""CoPE Studio settings: the web side's only reader of the environment.

Variables are read through ``cope_studio.lib.env`` (``worker.env``, the reader the model workers
use too). Defaults run the embedded setup (SQLite, Celery over a filesystem broker that needs no
server). ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to PostgreSQL and Redis. Every variable
is listed in ``.env.example``; ``docs/deploy.md`` says which matter in production.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from cope_studio.lib.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
)
from cope_studio.lib.secret_key import weak_secret_key_reason

# Django's generic classes take a type argument at run time as they do for mypy
# (``forms.ModelForm[Policy]``, ``admin.ModelAdmin[Job]``): django-stubs' documented way.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("COPE_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set when DJANGO_DEBUG is off."
        )
    SECRET_KEY = "insecure-development-key-only-for-debug"
# A weak key (the example's `change-me`, anything short) is refused when the web app starts
# with DEBUG off (cope_studio.wsgi: gunicorn, runserver) and by `check --deploy`; management
# commands and the test suite still run with a throwaway key.
WEAK_SECRET_KEY_REASON = "" if DEBUG else weak_secret_key_reason(SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- HTTPS behind a proxy. Off by default (the embedded default serves plain HTTP on
# 127.0.0.1); docs/deploy.md and .env.example give the production values, and
# tests/test_deploy_settings.py runs `check --deploy --fail-level WARNING` with them.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# Load balancers probe /healthz over plain HTTP (it is answered before this redirect anyway).
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# Only behind a proxy that sets X-Forwarded-Proto itself (and strips a client's own): then
# Django knows a request came over HTTPS although the proxy talks HTTP to gunicorn.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_HTTPS_PROXY", False) else None
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "cope_studio.apps.CopeStudioConfig",
    "policies",
    "labeling",
    "accounts",
    "axes",
]

# Django's model backend, with a user's own and group permissions read in one query. Django's
# own stays listed after it: sessions made before record it as their backend and stay valid
# (it reuses the permissions ours read, so it adds no query).
AUTHENTICATION_BACKENDS = [
    # First: a locked-out account or address is refused before any password is checked.
    "cope_studio.lib.auth.ThrottledLoginBackend",
    "cope_studio.lib.auth.StudioModelBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Single sign-on (accounts.oidc): answers only the provider's callback, and only when
    # COPE_OIDC_ISSUER is set; it reuses the permissions read above.
    "accounts.oidc.OIDCBackend",
]

MIDDLEWARE = [
    # First: /healthz answers before host validation and the HTTPS redirect (load balancers
    # probe by IP over plain HTTP) and before sessions (no login).
    "cope_studio.lib.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "cope_studio.lib.headers.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# --- Login throttling (django-axes; cope_studio.lib.login). Failures are counted per account
# and, separately, per client address; either one over the limit is refused, right password
# or not, until the cool-off passes without another try or an admin unlocks it.
AXES_FAILURE_LIMIT = env_int("COPE_LOGIN_FAILURE_LIMIT", 10, minimum=1)
COPE_LOGIN_COOLOFF_MINUTES = env_int("COPE_LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=COPE_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False  # no banner on every manage.py command; failures and lockouts are still logged
AXES_LOCKOUT_CALLABLE = "cope_studio.lib.login.locked_out"
AXES_CLIENT_IP_CALLABLE = "cope_studio.lib.login.client_address"
# Proxies in front of the web app that append the client's address to X-Forwarded-For (a TLS
# proxy: 1). 0 trusts no such header: the connection's own address is the client's.
COPE_PROXY_COUNT = env_int("COPE_PROXY_COUNT", 0, minimum=0, maximum=10)

_issuer = urlsplit(env_str("COPE_OIDC_ISSUER", ""))
_SSO_ORIGIN = [f"{_issuer.scheme}://{_issuer.netloc}"] if _issuer.netloc else []

# --- Content-Security-Policy (django-csp) and Permissions-Policy (cope_studio.lib.headers).
# Everything comes from this origin: htmx and the page scripts are vendored files, no inline
# script or style runs (htmx's own indicator style is off: static/css/studio.css has it), and
# fragments htmx swaps in obey the same policy.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        # The provider's sign-out page is where logging out redirects to.
        "form-action": ["'self'", *_SSO_ORIGIN],
        "frame-ancestors": ["'none'"],
    },
}
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
    "magnetometer=(), microphone=(), midi=(), payment=(), usb=()"
)

ROOT_URLCONF = "cope_studio.urls"
WSGI_APPLICATION = "cope_studio.wsgi.application"

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
                "cope_studio.lib.context.studio",
                "labeling.notify.context.notifications",
            ],
        },
    },
]

_default_db = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
# Persistent connections unless DEBUG: a new PostgreSQL connection per request doubled the
# policy list's p50 (16.7 ms against 7.1 ms kept) and slowed the review queue 52 -> 30 ms.
# Health checks make a kept connection that the database dropped reconnect instead of failing.
DATABASES = {
    "default": dj_database_url.parse(
        env_secret("DATABASE_URL", _default_db),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0 if DEBUG else 60, minimum=0),
        conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web app and the Celery worker write the same file: WAL lets readers go on while a
    # worker writes, and IMMEDIATE transactions wait for the lock instead of failing mid-way.
    # Django's backend, with write transactions queueing in the kernel (cope_studio/lib/sqlite).
    DATABASES["default"]["ENGINE"] = "cope_studio.lib.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "policies:list"
LOGOUT_REDIRECT_URL = "login"

# --- Single sign-on over OpenID Connect (accounts.oidc, mozilla-django-oidc). Off while
# COPE_OIDC_ISSUER is empty. Endpoints and keys come from the issuer's discovery document;
# ID tokens must be RS256, signed by a key of the provider's JWKS, for this client and issuer.
COPE_OIDC_ISSUER = env_str("COPE_OIDC_ISSUER", "").rstrip("/")
COPE_OIDC_PROVIDER_NAME = env_str("COPE_OIDC_PROVIDER_NAME", "single sign-on")
# Hides the local username/password form behind a link on the login page (it still works: a
# break-glass admin signs in with it while the provider is down).
COPE_OIDC_HIDE_LOCAL_LOGIN = env_bool("COPE_OIDC_HIDE_LOCAL_LOGIN", False)
OIDC_RP_CLIENT_ID = env_str("COPE_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = env_secret("COPE_OIDC_CLIENT_SECRET", "")
OIDC_RP_SCOPES = env_str("COPE_OIDC_SCOPES", "openid email profile")
# The claim listing a person's groups, and the groups that give each role. A role is set again
# at every sign-in: a group taken away at the provider takes the role away here.
COPE_OIDC_GROUPS_CLAIM = env_str("COPE_OIDC_GROUPS_CLAIM", "groups")
COPE_OIDC_AUTHOR_GROUP = env_str("COPE_OIDC_AUTHOR_GROUP", "")
COPE_OIDC_REVIEWER_GROUP = env_str("COPE_OIDC_REVIEWER_GROUP", "")
COPE_OIDC_ADMIN_GROUP = env_str("COPE_OIDC_ADMIN_GROUP", "")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_TIMEOUT = env_int("COPE_OIDC_TIMEOUT", 10, minimum=1)
# Kept for the provider's logout (id_token_hint).
OIDC_STORE_ID_TOKEN = True
OIDC_AUTHENTICATE_CLASS = "accounts.oidc.AuthenticateView"
OIDC_CALLBACK_CLASS = "accounts.oidc.CallbackView"
OIDC_OP_LOGOUT_URL_METHOD = "accounts.oidc.provider_logout_url"

# --- Email: password reset links (and any other mail the studio sends). The embedded default
# prints each message to the web process's log (console); smtp sends it.
_EMAIL_BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
}
EMAIL_BACKEND = _EMAIL_BACKENDS[env_choice("COPE_EMAIL_BACKEND", "console", tuple(_EMAIL_BACKENDS))]
EMAIL_FILE_PATH = str(DATA_DIR / "mail")  # the file backend's folder
EMAIL_HOST = env_str("COPE_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("COPE_EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("COPE_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_secret("COPE_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("COPE_EMAIL_STARTTLS", False)
EMAIL_USE_SSL = env_bool("COPE_EMAIL_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("Set COPE_EMAIL_STARTTLS or COPE_EMAIL_SSL, not both.")
EMAIL_TIMEOUT = env_int("COPE_EMAIL_TIMEOUT", 20, minimum=1)
DEFAULT_FROM_EMAIL = env_str("COPE_EMAIL_FROM", "CoPE Studio <cope-studio@localhost>")
# A reset link works once, and for this long.
PASSWORD_RESET_TIMEOUT = env_int("COPE_PASSWORD_RESET_HOURS", 24, minimum=1) * 3600

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only images that run collectstatic set this; otherwise WhiteNoise serves straight from the
# source folders and `make run` needs no collectstatic step.
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True
# Files served at the site's root: /favicon.ico, which browsers and tools ask for unprompted.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
if STATIC_ROOT:
    # Images: hashed names, compressed copies, cached for a year.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    WHITENOISE_MANIFEST_STRICT = False  # a file missing from the manifest is served unhashed

# Uploads: sample-set files are streamed from disk, never held whole in memory.
COPE_MAX_UPLOAD_MB = env_int("COPE_MAX_UPLOAD_MB", 200, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("COPE_MAX_FORM_MB", 10, minimum=1) * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# The model side, as far as the web app needs to know it.
COPE_BACKEND = env_choice("COPE_BACKEND", "embedding", ("embedding", "cope", "openai"))
COPE_CONTEXT_LIMIT = env_int("COPE_CONTEXT_LIMIT", 8192, minimum=256)
# A tokenizer directory (or hub id already in the local cache) for exact token counts in the
# editor; without one the editor shows a marked estimate.
COPE_TOKENIZER = env_str("COPE_TOKENIZER", "")
COPE_TWIN_BACKEND = env_choice("COPE_TWIN_BACKEND", "none", ("none", "transformers", "openai"))
# Items per scoring task: large enough that a chunk's bookkeeping (one transaction, ~10 ms)
# stays under 5% of even the fast CPU baseline's model time, small enough for live progress.
COPE_CHUNK_SIZE = env_int("COPE_CHUNK_SIZE", 128, minimum=1)
COPE_CLAIM_MINUTES = env_int("COPE_CLAIM_MINUTES", 15, minimum=1)
COPE_DEFAULT_THRESHOLD = env_float("COPE_DEFAULT_THRESHOLD", 0.95, minimum=0.5, maximum=1.0)
COPE_DEFAULT_MIN_SAMPLE = env_int("COPE_DEFAULT_MIN_SAMPLE", 200, minimum=1)

# Celery. The Job row is the truth the UI reads; no result backend is needed.
CELERY_BROKER_URL = env_secret("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = Path(env_str("COPE_BROKER_DIR", str(DATA_DIR / "broker"))).resolve()
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "messages"),
        "data_folder_out": str(BROKER_DIR / "messages"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    # The model workers' transport (worker.broker): messages written and taken atomically, so
    # a consumer never reads one half-written; both sides of the folders must use it. The
    # bookkeeping worker needs no millisecond polling (nobody waits on it in a request).
    CELERY_BROKER_TRANSPORT = "worker.broker:OrderedFilesystemTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS["busy_polling_interval"] = 0.01
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_TIME_LIMIT = env_int("COPE_TASK_TIME_LIMIT", 1800, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("COPE_TASK_SOFT_TIME_LIMIT", 1700, minimum=5)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "COPE_TASK_SOFT_TIME_LIMIT must be below COPE_TASK_TIME_LIMIT, so a task can clean up."
    )
CELERY_TASK_ROUTES = {
    "worker.*": {"queue": "gpu"},
    "labeling.*": {"queue": "default"},
    "policies.*": {"queue": "default"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after each task unless this
# is set, so each bookkeeping task opened a new one: 5-7 ms on PostgreSQL, more than a probe
# chunk's own writes. Set, the fixup closes them only every this many tasks, and
# ``cope_studio.celery`` treats a task as Django treats a request: DATABASE_CONN_MAX_AGE and the
# health checks apply, and a connection that failed is dropped before the task is retried.
CELERY_DB_REUSE_MAX = 1000
# A chunk is sent to the workers at most this often (its worker process keeps dying, or no
# answer comes); then it is failed with a clear error. The GPU workers read the same variable.
COPE_MAX_CHUNK_ATTEMPTS = env_int("COPE_MAX_CHUNK_ATTEMPTS", 3, minimum=1)
# Celery beat re-sends lost chunks of active jobs. A chunk counts as lost only after this long,
# which by default is above the task time limit, so a chunk still being scored is never sent
# twice (see labeling.jobs.services.lost_chunks for how a chunk still waiting in the queue is told
# apart).
COPE_RESUME_AFTER_SECONDS = env_int(
    "COPE_RESUME_AFTER_SECONDS", CELERY_TASK_TIME_LIMIT + 60, minimum=1
)
# Flow control and lost-chunk detection.
# Chunks of one job sent to the model workers and not answered yet; more are sent as results
# come back, so the broker holds a few messages per job, not the whole job. At least twice the
# number of model workers keeps each busy with one chunk waiting behind the one it scores.
# PostgreSQL: after a job of at least this many items, its tables' statistics are refreshed
# (ANALYZE, a sample: a fraction of a second) so the pages reading it are planned for its size.
COPE_ANALYZE_AFTER_ITEMS = env_int("COPE_ANALYZE_AFTER_ITEMS", 10_000, minimum=1)
COPE_CHUNKS_IN_FLIGHT = env_int("COPE_CHUNKS_IN_FLIGHT", 8, minimum=1)
# A chunk sent this long ago that is neither in a queue nor held by a model worker (asked over
# the broker) is lost and sent again; see labeling.jobs.services.lost_chunks.
COPE_RESEND_GRACE_SECONDS = env_int("COPE_RESEND_GRACE_SECONDS", 60, minimum=1)
# Attribution (labeling.explain): a finished job's mismatches explained automatically, at most
# this many per run (0: none automatically); "Explain more" asks for the next as many.
COPE_EXPLAIN_MAX_ITEMS = env_int("COPE_EXPLAIN_MAX_ITEMS", 500, minimum=0)
# Probes (labeling.probes): items of the evaluation set a probe scores (a random sample when the
# set is larger), and the topic leakage above which finalize warns (or refuses, per policy).
COPE_PROBE_ITEMS = env_int("COPE_PROBE_ITEMS", 200, minimum=1)
COPE_PROBE_MAX_LEAKAGE = env_float("COPE_PROBE_MAX_LEAKAGE", 0.10, minimum=0.0, maximum=1.0)
# Carve-outs an LLM is asked to write per probe (items labeled 1, at most this many).
COPE_PROBE_CARVEOUTS = env_int("COPE_PROBE_CARVEOUTS", 20, minimum=0)
# Suggested rewrites of a clause (labeling.whatif): candidates asked of the LLM backend, and the
# largest drop of gold F1 or of a class's recall a candidate may cause before it is rejected.
COPE_SUGGEST_CANDIDATES = env_int("COPE_SUGGEST_CANDIDATES", 3, minimum=1)
COPE_SUGGEST_TOLERANCE = env_float("COPE_SUGGEST_TOLERANCE", 0.02, minimum=0.0, maximum=1.0)
# Gold audit: A and B agree, both at least this far from p(1) = 0.5, and gold says otherwise.
COPE_GOLD_AUDIT_MARGIN = env_float("COPE_GOLD_AUDIT_MARGIN", 0.35, minimum=0.0, maximum=0.5)
# Notifications (labeling.notify): the studio's address, for links in emails and webhooks.
COPE_PUBLIC_URL = env_str("COPE_PUBLIC_URL", "http://localhost:8000").rstrip("/")
# Outgoing webhooks: tries per event, the first retry's delay (doubled for each later one), the
# seconds a receiver has to answer, and whether a URL may name a private or loopback address.
COPE_WEBHOOK_MAX_ATTEMPTS = env_int("COPE_WEBHOOK_MAX_ATTEMPTS", 6, minimum=1, maximum=20)
COPE_WEBHOOK_RETRY_BASE_SECONDS = env_float(
    "COPE_WEBHOOK_RETRY_BASE_SECONDS", 30.0, minimum=0.0, maximum=3600.0
)
COPE_WEBHOOK_TIMEOUT_SECONDS = env_float(
    "COPE_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.5, maximum=120.0
)
COPE_WEBHOOK_ALLOW_PRIVATE = env_bool("COPE_WEBHOOK_ALLOW_PRIVATE", False)
# How often Celery beat looks for lost chunks.
COPE_RESUME_EVERY_SECONDS = env_int("COPE_RESUME_EVERY_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "resume-stalled-jobs": {
        "task": "labeling.resume_stalled_jobs",
        "schedule": float(COPE_RESUME_EVERY_SECONDS),
        # A tick that waited longer than the next one (worker down) is dropped, not piled up.
        "options": {"queue": "default", "expires": max(1, COPE_RESUME_EVERY_SECONDS - 5)},
    },
    # Send again the webhook deliveries whose message was lost.
    "resume-webhook-deliveries": {
        "task": "labeling.resume_webhook_deliveries",
        "schedule": 60.0,
        "options": {"queue": "default", "expires": 55},
    },
    # Fail imports whose worker was lost, delete uploads nobody imported.
    "clean-uploads": {
        "task": "labeling.clean_uploads",
        "schedule": 3600.0,
        "options": {"queue": "default", "expires": 3000},
    },
}

# --- Live scoring (Try box, labeling API) ------------------------------------------
# django-ninja serves the API docs page's JavaScript and CSS from our static files (it uses a
# CDN only when it is not an installed app).
INSTALLED_APPS += ["ninja"]
# How often a consumer of the filesystem broker looks for new messages (Redis pushes instead).
# 50 ms keeps a live round trip well under a second at a few hundred directory listings a minute.
COPE_BROKER_POLL_SECONDS = env_float("COPE_BROKER_POLL_SECONDS", 0.05, minimum=0.005)
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = COPE_BROKER_POLL_SECONDS
# Review queue counts stop at this many (shown as "1000+"): counting the whole history would
# grow with it.
COPE_QUEUE_COUNT_CAP = env_int("COPE_QUEUE_COUNT_CAP", 1000, minimum=10)
# Live answers come back through a result backend, the same one the model workers write to (see
# worker.config.WorkerConfig.effective_result_backend): files next to the filesystem broker, or
# the Redis broker itself.
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or (
    f"file://{BROKER_DIR / 'results'}"
    if CELERY_BROKER_URL.startswith("filesystem://")
    else CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else ""
)
# Seconds a Try or an API call waits for a model worker before it says none answered. Keep it
# below the web server's own request timeout (gunicorn's --timeout, 30 s by default).
COPE_LIVE_TIMEOUT = env_float("COPE_LIVE_TIMEOUT", 20.0, minimum=1.0)
COPE_TRY_MAX_ITEMS = env_int("COPE_TRY_MAX_ITEMS", 50, minimum=1)
COPE_API_MAX_BATCH = env_int("COPE_API_MAX_BATCH", 256, minimum=1)
# Requests per API key per window (fixed window, counted in the Django cache).
COPE_API_RATE_LIMIT = env_int("COPE_API_RATE_LIMIT", 600, minimum=1)
COPE_API_RATE_WINDOW = env_int("COPE_API_RATE_WINDOW", 60, minimum=1)
# API keys age: a new key expires after this many days unless its creator picks another
# lifetime, and never longer than COPE_API_KEY_MAX_DAYS. A key that never expires is a
# credential nobody remembers to retire, so "never" is offered only where an install allows it.
COPE_API_KEY_DEFAULT_DAYS = env_int("COPE_API_KEY_DEFAULT_DAYS", 90, minimum=1)
COPE_API_KEY_MAX_DAYS = env_int("COPE_API_KEY_MAX_DAYS", 365, minimum=1)
COPE_API_KEY_ALLOW_NEVER = env_bool("COPE_API_KEY_ALLOW_NEVER", False)
# The rate limit's counters live in a cache every web process shares: Redis when COPE_CACHE_URL
# is set, otherwise a table in the database (cope_studio.lib.cache, made by a migration), so two
# gunicorn workers never count one key's requests apart.
_cache_url = env_str("COPE_CACHE_URL")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
    if _cache_url
    else {
        "BACKEND": "cope_studio.lib.cache.SharedDatabaseCache",
        "LOCATION": "cope_cache",
        # Entries (rate-limit windows, queue memos) kept before a third are culled, expired first.
        "OPTIONS": {"MAX_ENTRIES": 5000},
    },
    # Memos one web process keeps for itself (the review queue's "over the cap" counts): a
    # shared cache would cost the card a round trip to save one.
    "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "local"},
}
# Sessions stay in the database (they survive a cache flush); with a shared Redis cache they are
# also read from it, which spares every page a database round trip.
SESSION_ENGINE = (
    "django.contrib.sessions.backends.cached_db"
    if _cache_url
    else "django.contrib.sessions.backends.db"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Failed sign-ins and lockouts are warnings; axes' notes on every successful one are not kept.
    "loggers": {"axes": {"level": "WARNING"}},
}

# --- Model worker heartbeats (labeling.workers). A worker silent for longer than this
# is shown as down on the Workers page, and a job waiting for the gpu queue says so.
COPE_WORKER_DOWN_AFTER_SECONDS = env_int("COPE_WORKER_DOWN_AFTER_SECONDS", 60, minimum=5)
# A twin with fewer words changed than this share (0-1) of the text is "nearly a
# copy": the version page says agreement will be flattering, and finalize refuses it.
COPE_TWIN_MIN_CHANGED_WORDS = env_float(
    "COPE_TWIN_MIN_CHANGED_WORDS", 0.20, minimum=0.0, maximum=1.0
)
