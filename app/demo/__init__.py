"""The demo API under /api/, governed by the engine, for trying CORS from a browser."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request

bp = Blueprint("demo", __name__)

ECHO_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@bp.route("/echo", methods=ECHO_METHODS)
def echo():
    """Return what the request carried, so a browser console can see what arrived."""
    body = request.get_data(cache=False, as_text=True)
    response = jsonify(
        method=request.method,
        origin=request.headers.get("Origin"),
        path=request.path,
        headers=dict(request.headers),
        body=body[:10_000],
    )
    response.headers["X-Request-Id"] = uuid.uuid4().hex
    return response


@bp.get("/orders")
def orders():
    return jsonify(orders=[{"id": 1, "item": "coffee"}, {"id": 2, "item": "tea"}])


@bp.get("/public/status")
def public_status():
    return jsonify(status="ok")


@bp.get("/fail")
def fail():
    """An error on a governed route: its 500 carries the same CORS headers as a 200."""
    raise RuntimeError("demo failure")


@bp.get("/t/<tenant>/orders")
def tenant_orders(tenant: str):
    """A multi-tenant route: a rule can pick the allowlist of <tenant> for it."""
    return jsonify(tenant=tenant, orders=[{"id": 1, "item": "coffee"}])
