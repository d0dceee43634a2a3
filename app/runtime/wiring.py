"""The steps that put the runtime around an app's engine, and the one that takes it down.

The pieces are the engine's database mode (:mod:`cors_control.database`); an API that only
installs the engine gets them all from ``CorsControl(app, database_url=...)``. The admin app wires
them one by one instead: these steps resolve the policy database once, build one small SQLAlchemy
engine on it, and share it between the policy source, the request log's writer, the heartbeat
and housekeeping; :func:`stop_runtime` stops what they started and disposes that engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import Flask

from cors_control import CorsControl, get_control
from cors_control.database import (
    DEFAULT_CHANNEL,
    DatabasePolicySource,
    PolicyListener,
    ProcessHeartbeat,
    create_source_engine,
)

from ..request_log import RequestLog, get_request_log
from .alerts import AlertJob
from .housekeeping import Housekeeping
from .publication import PolicyPublication

_DATABASE_KEY = "runtime_database"
_LISTENER_KEY = "policy_listener"
_ALERTS_KEY = "alert_job"
_HEARTBEAT_KEY = "process_heartbeat"
_PUBLICATION_KEY = "policy_publication"


def policy_database_url(config: Mapping[str, Any]) -> str:
    """Where the policy lives: ``CORS_DATABASE_URL``, else the app's own database."""
    url = config.get("CORS_DATABASE_URL") or config.get("SQLALCHEMY_DATABASE_URI")
    if not url:
        raise RuntimeError("no policy database: set CORS_DATABASE_URL (or "
                           "SQLALCHEMY_DATABASE_URI) to the database that holds the rules")
    return url


def connect_policy_database(app: Flask) -> sa.Engine:
    """The runtime's engine on the policy database, built once per app (a forked worker
    starts with an empty pool of its own: see :func:`create_source_engine`)."""
    engine = create_source_engine(policy_database_url(app.config))
    app.extensions[_DATABASE_KEY] = engine
    return engine


def attach_cors(app: Flask, database: sa.Engine) -> CorsControl:
    """The engine, reading its policy from *database*."""
    return CorsControl(app, source=DatabasePolicySource(database))


def attach_request_log(app: Flask, control: CorsControl, database: sa.Engine) -> RequestLog:
    """The request log: records the engine's refusals and writes them to *database*."""
    return RequestLog(app, control, engine=database)


def attach_publication(app: Flask, control: CorsControl) -> PolicyPublication:
    """The policy served to data planes: read through the engine's source, woken by its
    cache (see :mod:`.publication`)."""
    publication = PolicyPublication(control.cache, control.cache.source,
                                    max_waiters=int(app.config.get("DATA_PLANE_MAX_WAITERS",
                                                                   64)))
    app.extensions[_PUBLICATION_KEY] = publication
    return publication


def get_publication(app: Flask) -> PolicyPublication:
    return app.extensions[_PUBLICATION_KEY]


def attach_heartbeat(app: Flask, control: CorsControl, database: sa.Engine) -> ProcessHeartbeat:
    """Once a server hands *app* its first request, report after each policy check the
    version this process serves to *database* (CLI commands and scripts never report)."""
    heartbeat = ProcessHeartbeat(database)
    heartbeat.watch(app)
    control.cache.add_check_listener(heartbeat)
    app.extensions[_HEARTBEAT_KEY] = heartbeat
    return heartbeat


def get_heartbeat(app: Flask) -> ProcessHeartbeat:
    """The heartbeat :func:`attach_heartbeat` attached to *app*."""
    return app.extensions[_HEARTBEAT_KEY]


def attach_housekeeping(app: Flask, control: CorsControl) -> Housekeeping:
    """After policy checks, hourly: prune the request log and purge long-expired origins."""
    housekeeping = Housekeeping(app)
    control.cache.add_check_listener(housekeeping)
    return housekeeping


def notify_url(config: Mapping[str, Any]) -> str | None:
    """Where the process listens for pushed changes: ``CORS_NOTIFY_URL``, else the policy
    database; None where there is nothing to listen to (not PostgreSQL, or ``off``)."""
    url = config.get("CORS_NOTIFY_URL") or policy_database_url(config)
    if url.strip().lower() in ("off", "0", "false", "no", "none"):
        return None
    return url if url.startswith("postgresql") else None


def attach_listener(app: Flask, control: CorsControl) -> PolicyListener | None:
    """On PostgreSQL: listen for the version each change announces and reload at once; the
    poller then checks every ``CORS_LISTEN_REFRESH_INTERVAL`` seconds while listening, and
    every ``CORS_REFRESH_INTERVAL`` seconds while not. Elsewhere, polling alone (None)."""
    url = notify_url(app.config)
    if url is None:
        return None
    listener = PolicyListener(
        url, control.cache,
        channel=app.config.get("CORS_NOTIFY_CHANNEL") or DEFAULT_CHANNEL,
        interval=control.cache.interval,
        listening_interval=float(app.config.get("CORS_LISTEN_REFRESH_INTERVAL", 5.0)),
    )
    control.cache.add_start_listener(listener)
    app.extensions[_LISTENER_KEY] = listener
    return listener


def get_listener(app: Flask) -> PolicyListener | None:
    return app.extensions.get(_LISTENER_KEY)


def attach_alerts(app: Flask, control: CorsControl) -> AlertJob:
    """The alert job's thread, started by the first policy check of a serving process
    (unless ``ALERTS_JOB_ENABLED`` is off); see :mod:`.alerts`."""
    job = AlertJob(app, every=float(app.config.get("ALERTS_INTERVAL", 30.0)),
                   enabled=bool(app.config.get("ALERTS_JOB_ENABLED", True)))
    app.extensions[_ALERTS_KEY] = job
    control.cache.add_check_listener(job)
    return job


def get_alert_job(app: Flask) -> AlertJob:
    return app.extensions[_ALERTS_KEY]


def stop_runtime(app: Flask, *, flush_log: bool = True) -> None:
    """Stop the policy poller, the listener and the alert job, withdraw the process from the
    overview, then stop the request log (writing what is pending first unless *flush_log* is
    false), then dispose the runtime's engine. Stopping twice does no harm."""
    get_control(app).cache.stop()
    listener = get_listener(app)
    if listener is not None:
        listener.stop()
    if _ALERTS_KEY in app.extensions:
        app.extensions[_ALERTS_KEY].stop()
    get_heartbeat(app).withdraw()
    get_request_log(app).close(flush=flush_log)
    app.extensions[_DATABASE_KEY].dispose()
