"""Each serving process reports which policy version it serves, so a stale worker is visible.

Only a process that serves appears: the heartbeat is armed by the first request a WSGI server
hands to the app (Werkzeug's ``flask run``, gunicorn, waitress, mod_wsgi: their environ names
the server in ``SERVER_SOFTWARE``). CLI commands never dispatch a request, and Flask's test
client sets no ``SERVER_SOFTWARE``, so commands and one-off scripts never register.

Once armed, it is a check listener of the policy cache: called by the engine's poller after each
check (never on the request path), it writes one row per process at most every ``every``
seconds, and soon after the version served moved (:data:`VERSION_REPORT_DELAY`: not in the
moment every process of a fleet reloads at once, where the writes would slow the reloads).
A process that stops gracefully (exit, gunicorn's SIGTERM, :meth:`withdraw`) deletes its
row; one that dies without a word stops being listed when its row ages (the admin
application's overview) and its housekeeping deletes it. It needs ``INSERT``, ``UPDATE``
and ``DELETE`` on ``engine_processes``.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, request, request_started
from sqlalchemy.dialects import postgresql, sqlite

from ..cache import CacheStatus, PolicyCache
from .tables import engine_processes as _table

logger = logging.getLogger("cors_control")
_live_heartbeats: weakref.WeakSet[ProcessHeartbeat] = weakref.WeakSet()

HEARTBEAT_SECONDS = 5.0
# A moved version is reported this long after the reload: the admin application allows a
# process seconds (its stale grace) to catch up, and a fleet reloading a change at once
# should not also write its rows at once.
VERSION_REPORT_DELAY = 0.5


def served_by_a_server(environ: dict[str, Any]) -> bool:
    """Whether a WSGI server (not a test client) handed over the request of *environ*."""
    return bool(environ.get("SERVER_SOFTWARE"))


class ProcessHeartbeat:
    def __init__(self, engine: sa.Engine, *, every: float = HEARTBEAT_SECONDS) -> None:
        self.engine = engine
        self.every = every
        self.report_delay = VERSION_REPORT_DELAY
        self._pending: threading.Timer | None = None
        self.started_at = datetime.now(UTC)
        self.serving = False
        self._last = 0.0
        self._last_version: int | None = None
        self._written_by: int | None = None  # the pid whose row this process wrote
        self._withdrawn = False
        self._lock = threading.Lock()
        self._host = socket.gethostname()[:150]
        _live_heartbeats.add(self)

    @property
    def process_id(self) -> str:
        return f"{self._host}:{os.getpid()}"

    def watch(self, app: Flask) -> None:
        """Arm on the first request a WSGI server hands to *app*."""
        request_started.connect(self._on_request, app, weak=False)

    def _on_request(self, sender: Flask, **extra: Any) -> None:
        if not self.serving and served_by_a_server(request.environ):
            self.serve()

    def serve(self) -> None:
        """Report from the poller's next check on (the request thread never writes)."""
        self.serving = True

    def __call__(self, cache: PolicyCache) -> None:
        if not self.serving:
            return
        status = cache.status()
        now = time.time()
        if now - self._last < self.every:
            if status.version == self._last_version:
                return
            if self.report_delay > 0:
                self._report_later(cache)
                return
        self._write(status, now)

    def _report_later(self, cache: PolicyCache) -> None:
        with self._lock:
            if self._pending is not None or self._withdrawn:
                return
            timer = threading.Timer(self.report_delay, self._report_pending, (cache,))
            timer.daemon = True
            self._pending = timer
        timer.start()

    def _report_pending(self, cache: PolicyCache) -> None:
        with self._lock:
            self._pending = None
        try:
            self._write(cache.status(), time.time())
        except Exception:
            logger.exception("could not report process %s to the overview", self.process_id)

    def _write(self, status: CacheStatus, now: float) -> None:
        pid = os.getpid()
        row = {
            "id": f"{self._host}:{pid}",
            "host": self._host,
            "pid": pid,
            "policy_version": status.version,
            "last_check": datetime.fromtimestamp(status.last_check or now, UTC),
            "started_at": self.started_at,
            "last_error": status.last_error or "",
        }
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(_table).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={k: statement.excluded[k] for k in row if k not in ("id", "started_at")},
        )
        with self._lock:
            if self._withdrawn:
                return
            self._last, self._last_version = now, status.version  # a failure waits its turn
            try:
                with self.engine.begin() as conn:
                    conn.execute(statement)
            except Exception:
                if status.last_error:
                    return  # the database is down; the cache has logged the outage once
                raise
            self._written_by = pid

    def withdraw(self) -> None:
        """Delete this process's row and report no more (a graceful stop). Stopping twice,
        or stopping a process that never served, does nothing."""
        with self._lock:
            if self._withdrawn:
                return
            self._withdrawn = True
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
            if self._written_by != os.getpid():
                return
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.delete(_table).where(_table.c.id == self.process_id))
            except Exception as exc:  # it will age out of the overview and be deleted
                logger.warning("could not withdraw process %s from the overview: %s",
                               self.process_id, type(exc).__name__)

    def _after_fork(self) -> None:
        # A forked child is a process of its own: it serves (and reports) once it is handed a
        # request, and never deletes its parent's row.
        self._lock = threading.Lock()
        self._pending = None
        self.serving = False
        self._withdrawn = False
        self._last = 0.0
        self._last_version = None
        self._written_by = None
        self.started_at = datetime.now(UTC)


def _withdraw_all_at_exit() -> None:
    for heartbeat in list(_live_heartbeats):
        heartbeat.withdraw()


def _reset_after_fork() -> None:
    for heartbeat in list(_live_heartbeats):
        heartbeat._after_fork()


atexit.register(_withdraw_all_at_exit)
os.register_at_fork(after_in_child=_reset_after_fork)
