"""The JSON admin API: the same service functions as the dashboard and the CLI, over HTTP.

Callers authenticate with API tokens (``Authorization: Bearer <secret>``), never with the
dashboard's session cookie, so the API needs no CSRF token. Errors are RFC 9457 problem
documents; the OpenAPI document at ``openapi.json`` describes every operation.
"""

from __future__ import annotations

from flask import Blueprint

URL_PREFIX = "/admin/api/v1"

bp = Blueprint("api", __name__)

from . import (  # noqa: E402,F401
    audit,
    auth,
    check,
    data_plane,
    drafts,
    log,
    openapi,
    origin_lists,
    policy,
    problems,
    rules,
    tenants,
    webhooks,
)
