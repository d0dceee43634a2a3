"""GET /healthz: the policy version this process serves, or why it serves none, and the state
of its request log.

The status code answers one question, the one a load balancer asks: does this process serve
the CORS policy? 200 while it does (even a stale one), 503 only while it has none. The request
log never changes the code: a log that cannot be written is reported as ``"degraded"`` in the
body, for monitoring to alert on, while the engine keeps deciding requests correctly. A 503
there would make a load balancer take every healthy engine out of rotation because of a
bookkeeping problem. Reasons are generic: the database driver's text (host, port, user) goes
to the server log only, never to whoever can reach /healthz.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, jsonify

from cors_control import get_control
from cors_control.refusals import RefusalRecorder

bp = Blueprint("health", __name__)

STALE = "the policy database is unreachable; serving the last policy loaded (details in the log)"
UNREACHABLE = "the policy database is unreachable (details in the log)"
NOT_LOADED = "no policy loaded yet"


@bp.get("/healthz")
def healthz():
    cache = get_control(current_app).cache
    cache.get()
    status = cache.status()
    body: dict[str, Any] = {
        "status": "ok" if status.healthy else "unavailable",
        "policy_version": status.version,
        "loaded_at": status.loaded_at,
        "last_check": status.last_check,
        "pid": status.pid,
    }
    if status.last_error:
        # Serving the last good policy while the database is unreachable is still healthy:
        # taking every worker out of rotation would turn a database outage into an API outage.
        body["stale"] = True
        body["error"] = STALE
    request_log = current_app.extensions.get("request_log")
    if request_log is not None and request_log.recorder is not None:
        body["request_log"] = _request_log_health(request_log.recorder)
    if not status.healthy:
        body["reason"] = UNREACHABLE if status.last_error else NOT_LOADED
        return jsonify(body), 503
    return jsonify(body)


def _request_log_health(recorder: RefusalRecorder) -> dict[str, Any]:
    """``degraded`` while flushes fail (refusals wait in memory, bounded); never a 503."""
    health = recorder.health()
    now = time.time()
    return {
        "status": "degraded" if health.degraded else "ok",
        "pending_keys": health.pending_keys,
        "pending_events": health.pending_events,
        "oldest_pending_age_seconds": round(health.oldest_pending_age(now), 3),
        "failing_for_seconds": (None if health.failing_since is None
                                else round(now - health.failing_since, 3)),
        "quarantined_rows": health.quarantined_rows,
    }
