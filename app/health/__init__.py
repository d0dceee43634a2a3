"""GET /healthz: the policy version this process serves, or why it serves none."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..cors import get_control

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    cache = get_control(current_app).cache
    cache.get()
    status = cache.status()
    body = {
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
        body["error"] = status.last_error
    if not status.healthy:
        body["reason"] = status.last_error or "no policy loaded yet"
        return jsonify(body), 503
    return jsonify(body)
