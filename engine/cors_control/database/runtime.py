"""What ``CorsControl(app, database_url=...)`` runs around the engine: the policy read from
the database, changes pushed by PostgreSQL, refusals written to ``request_log``.

The admin application wires the same pieces itself (it shares one engine with its heartbeat
and housekeeping); this is the wiring for an API that only installs the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import Flask

from ..refusals import RecorderSettings, RefusalRecorder
from .heartbeat import ProcessHeartbeat
from .listener import DEFAULT_CHANNEL, PolicyListener
from .log_sink import DatabaseRefusalSink
from .source import DatabasePolicySource, create_source_engine

if TYPE_CHECKING:
    from ..extension import CorsControl


def _engine_url(url: str) -> str:
    """*url* with psycopg (the driver the extra installs) for a bare ``postgresql://``; a
    ValueError for a database the admin application does not run on."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise ValueError(f"database_url names a {backend} database; database mode reads the "
                         "admin application's database, which is PostgreSQL or SQLite: use "
                         "its URL (postgresql+psycopg://user@host/dbname)")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class DatabaseRuntime:
    """The engine on the database at *url*, and what runs beside the policy cache.

    :param listen: on PostgreSQL, reload as soon as a change is announced (``LISTEN``);
        polling goes on as a safety net, and alone where there is nothing to listen to.
    :param request_log: record refusals into ``request_log``.
    :param heartbeat: report the policy version each serving process holds to
        ``engine_processes`` (the admin overview's process list).
    """

    def __init__(self, url: str, *, listen: bool, request_log: bool, heartbeat: bool) -> None:
        self.url = _engine_url(url)
        self.engine = create_source_engine(self.url)
        self.source = DatabasePolicySource(self.engine)
        self._listen = listen
        self._request_log = request_log
        self._heartbeat = heartbeat
        self.listener: PolicyListener | None = None
        self.recorder: RefusalRecorder | None = None
        self.heartbeat: ProcessHeartbeat | None = None

    def attach(self, control: CorsControl, app: Flask) -> None:
        """Start beside *control* (attached to *app*, its cache interval set) what was asked."""
        config = app.config
        cache = control.cache
        if self._listen and self.engine.dialect.name == "postgresql":
            self.listener = PolicyListener(
                self.url, cache,
                channel=config.get("CORS_NOTIFY_CHANNEL") or DEFAULT_CHANNEL,
                interval=cache.interval,
                listening_interval=float(config.get("CORS_LISTEN_REFRESH_INTERVAL", 5.0)),
            )
            cache.add_start_listener(self.listener)
        if self._request_log:
            settings = RecorderSettings.from_config(
                {**config, "CORS_API_PREFIXES": control.api_prefixes})
            self.recorder = RefusalRecorder(DatabaseRefusalSink(self.engine), settings)
            control.add_listener(self.recorder.record, every_decision=False)
        if self._heartbeat:
            self.heartbeat = ProcessHeartbeat(self.engine)
            self.heartbeat.watch(app)
            cache.add_check_listener(self.heartbeat)

    def close(self) -> None:
        """Stop the listener, withdraw the heartbeat, write the pending refusals (retrying
        for ``REQUEST_LOG_EXIT_FLUSH_SECONDS``), and dispose the engine. The caller stops
        the poller first."""
        if self.listener is not None:
            self.listener.stop()
        if self.heartbeat is not None:
            self.heartbeat.withdraw()
        if self.recorder is not None:
            self.recorder.stop(flush=True)
        self.engine.dispose()
