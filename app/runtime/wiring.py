"""The steps that put the runtime around an app's engine, and the one that takes it down.

The CORS engine (:mod:`app.cors`) knows no database: it is handed a policy source. These steps
resolve the policy database once, build one small SQLAlchemy engine on it, and share it between
the policy source, the request log's writer and the heartbeat; :func:`stop_runtime` stops what
they started and disposes that engine.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import Flask

from ..cors import CorsControl, get_control
from ..request_log import RequestLog, get_request_log
from .heartbeat import ProcessHeartbeat
from .housekeeping import Housekeeping
from .source import DatabasePolicySource, create_source_engine

_DATABASE_KEY = "runtime_database"
_HEARTBEAT_KEY = "process_heartbeat"
# Engines whose pooled connections a forked worker must not share with its parent
# (gunicorn --preload): the child drops them without closing the parent's sockets.
_policy_databases: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _forget_connections_after_fork() -> None:
    for engine in list(_policy_databases):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def policy_database_url(config: Mapping[str, Any]) -> str:
    """Where the policy lives: ``CORS_DATABASE_URL``, else the app's own database."""
    url = config.get("CORS_DATABASE_URL") or config.get("SQLALCHEMY_DATABASE_URI")
    if not url:
        raise RuntimeError("no policy database: set CORS_DATABASE_URL (or "
                           "SQLALCHEMY_DATABASE_URI) to the database that holds the rules")
    return url


def connect_policy_database(app: Flask) -> sa.Engine:
    """The runtime's engine on the policy database, built once per app."""
    engine = create_source_engine(policy_database_url(app.config))
    app.extensions[_DATABASE_KEY] = engine
    _policy_databases.add(engine)
    return engine


def attach_cors(app: Flask, database: sa.Engine) -> CorsControl:
    """The engine, reading its policy from *database*."""
    return CorsControl(app, source=DatabasePolicySource(database))


def attach_request_log(app: Flask, control: CorsControl, database: sa.Engine) -> RequestLog:
    """The request log: records the engine's refusals and writes them to *database*."""
    return RequestLog(app, control, engine=database)


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


def stop_runtime(app: Flask, *, flush_log: bool = True) -> None:
    """Stop the policy poller, withdraw the process from the overview, then stop the request
    log (writing what is pending first unless *flush_log* is false), then dispose the
    runtime's engine. Stopping twice does no harm."""
    get_control(app).cache.stop()
    get_heartbeat(app).withdraw()
    get_request_log(app).close(flush=flush_log)
    app.extensions[_DATABASE_KEY].dispose()
