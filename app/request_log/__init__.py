"""The request log: refused origins, failed preflights and report-only findings, aggregated.

``RequestLog(app, control, engine=engine)`` listens to the app's :class:`~cors_control.CorsControl`
and records through the engine's :class:`~cors_control.refusals.RefusalRecorder`, writing to
``request_log`` with :class:`~cors_control.database.DatabaseRefusalSink` on *engine* (the
runtime's, which the runtime disposes); ``/metrics`` exposes counters.
"""

from __future__ import annotations

import hmac
import logging

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cors_control import CorsControl, get_control
from cors_control.database import DatabaseRefusalSink
from cors_control.refusals import RecorderSettings, RefusalRecorder

from .metrics import CorsCollector, DecisionCounters

_EXTENSION_KEY = "request_log"
# /metrics without METRICS_TOKEN answers only these peers (see ``metrics``).
LOOPBACK = frozenset({"127.0.0.1", "::1"})

logger = logging.getLogger(__name__)


class RequestLog:
    """Attach the recorder and the counters to an app's engine."""

    def __init__(self, app: Flask | None = None, control: CorsControl | None = None, *,
                 engine: sa.Engine) -> None:
        self.engine = engine
        self.recorder: RefusalRecorder | None = None
        self.counters = DecisionCounters()
        self.registry = CollectorRegistry(auto_describe=True)
        if app is not None:
            self.init_app(app, control)

    def init_app(self, app: Flask, control: CorsControl | None = None) -> None:
        control = control or get_control(app)
        config = app.config
        self.recorder = RefusalRecorder(DatabaseRefusalSink(self.engine),
                                        RecorderSettings.from_config(config))
        # Allowed requests call neither: the counters get them in batches, off the request
        # path, and the recorder has nothing to record of them.
        control.add_listener(self.counters.observe, every_decision=False)
        control.add_tally(self.counters.observe_all)
        control.add_listener(self.recorder.record, every_decision=False)
        self.registry.register(CorsCollector(self.counters, self.recorder, control))
        app.extensions[_EXTENSION_KEY] = self
        app.register_blueprint(metrics_bp)
        if config.get("METRICS_ENABLED") and not config.get("METRICS_TOKEN"):
            logger.warning("METRICS_ENABLED without METRICS_TOKEN: /metrics answers only "
                           "direct requests from 127.0.0.1 and ::1; set METRICS_TOKEN to "
                           "scrape it from elsewhere or through a proxy")

    def close(self, *, flush: bool = True) -> None:
        """Stop recording; with *flush*, write what is pending, retrying for at most
        ``REQUEST_LOG_EXIT_FLUSH_SECONDS``. The database engine is left to its owner."""
        if self.recorder is not None:
            self.recorder.stop(flush=flush)


def get_request_log(app: Flask) -> RequestLog:
    return app.extensions[_EXTENSION_KEY]


metrics_bp = Blueprint("metrics", __name__)


@metrics_bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics: off unless METRICS_ENABLED; behind METRICS_TOKEN when it is set.

    Without a token only a direct loopback peer gets an answer: a scraper on the same host.
    A request that came through a proxy (it carries a forwarding header) is refused even from
    loopback, since the proxy's own address says nothing about the client behind it.
    """
    config = current_app.config
    if not config.get("METRICS_ENABLED"):
        abort(404)
    token = config.get("METRICS_TOKEN")
    if token:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            return Response("a bearer token is required\n", status=401, mimetype="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    elif not _direct_loopback():
        return Response("/metrics answers only local requests while METRICS_TOKEN is unset; "
                        "set METRICS_TOKEN to scrape it from elsewhere\n", status=403,
                        mimetype="text/plain")
    registry = get_request_log(current_app).registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _direct_loopback() -> bool:
    forwarded = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
    return request.remote_addr in LOOPBACK and not any(h in request.headers for h in forwarded)
