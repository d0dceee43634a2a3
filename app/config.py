"""Configuration, read from the environment in one place."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# An installed wheel carries the templates, static files and migrations inside the package
# (see setup.py); a checkout keeps them at the repository's top level.
BUNDLED = Path(__file__).resolve().parent / "_bundled"


def resource_dir(name: str) -> Path:
    """Where *name* (``templates``, ``static`` or ``migrations``) is: inside the installed
    package, else at the top of the checkout."""
    bundled = BUNDLED / name
    return bundled if bundled.is_dir() else ROOT / name


def default_instance_path() -> str | None:
    """``INSTANCE_PATH``, else ``instance/`` in a checkout; None for an installed package,
    which lets Flask choose ``<prefix>/var/app-instance`` instead of a folder beside
    site-packages."""
    configured = os.environ.get("INSTANCE_PATH")
    if configured:
        return configured
    return str(ROOT / "instance") if (ROOT / "pyproject.toml").is_file() else None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, not {raw!r}")
    return value


def _count(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit():
        raise ValueError(f"{name} must be a whole number, 0 or more, not {raw!r}")
    return int(raw)


def _bytes(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) == 0:
        raise ValueError(f"{name} must be a whole number of bytes greater than 0, not {raw!r}")
    return int(raw)


def _prefixes(name: str, default: str) -> tuple[str, ...]:
    raw = os.environ.get(name, default)
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def default_database_url(instance_path: str) -> str:
    return f"sqlite:///{Path(instance_path) / 'cors-control.db'}"


class Config:
    """Settings for a running app. Every value can be overridden by the environment;
    ``create_app(test_config)`` overrides them again for tests."""

    def __init__(self) -> None:
        self.SECRET_KEY = os.environ.get("SECRET_KEY")
        # None means: SQLite under instance/, filled in by create_app.
        self.SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or None
        self.SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
        # Request bodies: 1 MB, except policy imports (README, "Limits").
        self.MAX_CONTENT_LENGTH = _bytes("MAX_CONTENT_LENGTH", 1024 * 1024)
        self.IMPORT_MAX_BYTES = _bytes("IMPORT_MAX_BYTES", 20 * 1024 * 1024)
        # One limit for forms too (Werkzeug's own default for a form field is 500 KB), so
        # the page that refuses a form names the limit that applied.
        self.MAX_FORM_MEMORY_SIZE = self.MAX_CONTENT_LENGTH
        # How often each process checks the policy version (seconds).
        self.CORS_REFRESH_INTERVAL = _float("CORS_REFRESH_INTERVAL", 0.5)
        # Push on PostgreSQL (README, "Freshness and failure"): where each process listens for
        # changes (default: the policy database; "off" to poll only), on which channel, and
        # how often it still polls while listening.
        self.CORS_NOTIFY_URL = os.environ.get("CORS_NOTIFY_URL") or None
        self.CORS_NOTIFY_CHANNEL = os.environ.get("CORS_NOTIFY_CHANNEL") or "cors_policy"
        self.CORS_LISTEN_REFRESH_INTERVAL = _float("CORS_LISTEN_REFRESH_INTERVAL", 5.0)
        # Paths the engine never governs: the admin surface and the health endpoint.
        self.CORS_EXCLUDED_PREFIXES = _prefixes(
            "CORS_EXCLUDED_PREFIXES", "/admin,/healthz,/metrics,/static"
        )
        # Where a process that has no policy yet refuses cross-origin requests (fail closed).
        self.CORS_API_PREFIXES = _prefixes("CORS_API_PREFIXES", "/api/")
        # Data planes (README, "Control-plane mode"): how many long polls for the policy may
        # wait at once (each holds a worker thread; past it a poll is answered at once), and
        # the largest body of refusals one may send.
        self.DATA_PLANE_MAX_WAITERS = _count("DATA_PLANE_MAX_WAITERS", 64)
        self.DATA_PLANE_REFUSALS_MAX_BYTES = _bytes("DATA_PLANE_REFUSALS_MAX_BYTES",
                                                    4 * 1024 * 1024)
        # The request log of refusals (see README, "The request log").
        self.REQUEST_LOG_FLUSH_INTERVAL = _float("REQUEST_LOG_FLUSH_INTERVAL", 2.0)
        self.REQUEST_LOG_BUCKET_SECONDS = int(_float("REQUEST_LOG_BUCKET_SECONDS", 3600))
        self.REQUEST_LOG_MAX_KEYS = int(_float("REQUEST_LOG_MAX_KEYS", 10_000))
        self.REQUEST_LOG_RETENTION_DAYS = _float("REQUEST_LOG_RETENTION_DAYS", 30)
        # How long a stopping process retries writing what it still holds.
        self.REQUEST_LOG_EXIT_FLUSH_SECONDS = _float("REQUEST_LOG_EXIT_FLUSH_SECONDS", 5.0)
        # Expired origins stop matching at once; they are deleted this many days later.
        self.EXPIRED_ORIGIN_RETENTION_DAYS = _float("EXPIRED_ORIGIN_RETENTION_DAYS", 30)
        # /metrics: off unless enabled; behind a bearer token when one is set, else loopback only.
        self.METRICS_ENABLED = os.environ.get("METRICS_ENABLED", "0") in ("1", "true", "yes")
        self.METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
        self.DEMO_POLICY = os.environ.get("DEMO_POLICY", "1") not in ("0", "false", "no")
        # Dashboard sessions end this long after sign-in, or after this long unused.
        self.PERMANENT_SESSION_LIFETIME = timedelta(hours=_float("SESSION_LIFETIME_HOURS", 12))
        self.SESSION_IDLE_TIMEOUT = timedelta(minutes=_float("SESSION_IDLE_MINUTES", 60))
        # A CSRF token lives as long as its session, not a fixed hour: a page used through
        # htmx for longer than that keeps working, and the session limits above still apply.
        self.WTF_CSRF_TIME_LIMIT = None
        # Alerts to webhooks (README, "Alerts"): the job's period, the HTTP timeout of a
        # delivery, the retry backoff (base doubling up to a cap) and the attempts before a
        # delivery is given up; ALERTS_JOB_ENABLED=0 runs no job in this process.
        self.ALERTS_JOB_ENABLED = os.environ.get("ALERTS_JOB_ENABLED", "1") not in (
            "0", "false", "no")
        self.ALERTS_INTERVAL = _float("ALERTS_INTERVAL", 30.0)
        self.ALERTS_HTTP_TIMEOUT = _float("ALERTS_HTTP_TIMEOUT", 5.0)
        self.ALERTS_RETRY_BASE_SECONDS = _float("ALERTS_RETRY_BASE_SECONDS", 30.0)
        self.ALERTS_RETRY_CAP_SECONDS = _float("ALERTS_RETRY_CAP_SECONDS", 3600.0)
        self.ALERTS_MAX_ATTEMPTS = int(_float("ALERTS_MAX_ATTEMPTS", 8))
        # The dashboard's address as its users reach it (with any path prefix), for absolute
        # links in alerts; without it an alert carries a relative link and says so.
        self.CORS_CONTROL_PUBLIC_URL = os.environ.get("CORS_CONTROL_PUBLIC_URL", "").strip()
        # Reverse proxies in front of the app that set X-Forwarded-For (and -Proto); the
        # client address for sign-in throttling is the one the outermost of them saw.
        self.TRUSTED_PROXIES = _count("TRUSTED_PROXIES", 0)
