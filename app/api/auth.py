"""Who is calling: an API token in ``Authorization: Bearer <secret>``, nothing else.

The dashboard's session cookie does not authenticate here (so no CSRF token is needed), and
tokens do not authenticate the dashboard. A missing, unknown, expired or revoked token gets
401 with ``WWW-Authenticate: Bearer``; a token whose role does not allow the call gets 403.
A data-plane token gets 403 everywhere but the two data-plane endpoints.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import g, request

from ..extensions import db
from ..models import ApiToken
from ..services import access
from ..services.access import Actor
from ..services.tokens import authenticate_token, hash_secret, token_actor, token_state
from . import bp
from .inputs import check_arguments
from .problems import ApiProblem

REALM = "cors-control"
# Views anyone may fetch without a token (the API's own description).
PUBLIC_ENDPOINTS = frozenset({"api.openapi_document"})
# The only views a data-plane token may call (app/api/data_plane.py).
DATA_PLANE_ENDPOINTS = frozenset({"api.data_plane_policy", "api.data_plane_refusals"})


@bp.before_request
def authenticate() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    secret = _bearer_secret()
    if secret is None:
        raise _unauthorized("send an API token: Authorization: Bearer <token> (an admin "
                            "creates one with flask tokens create)", error=None)
    token = authenticate_token(secret)
    if token is None:
        raise _unauthorized(_refusal(secret), error="invalid_token")
    g.api_token = token
    g.api_actor = token_actor(token)
    if request.endpoint not in DATA_PLANE_ENDPOINTS:
        access.require_not_data_plane(g.api_actor)
    check_arguments()


def current_actor() -> Actor:
    return g.api_actor


def current_token() -> ApiToken:
    return g.api_token


def require_writer() -> Actor:
    """The caller, if its role may change the policy; checked here before any service call."""
    actor = current_actor()
    access.require_writer(actor)
    return actor


def _bearer_secret() -> str | None:
    scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def _refusal(secret: str) -> str:
    """Why a token was refused; only the holder of the secret learns its state."""
    token = db.session.scalar(sa.select(ApiToken).where(
        ApiToken.token_hash == hash_secret(secret))) if len(secret) <= 200 else None
    state = token_state(token) if token is not None else "unknown"
    if state == "expired":
        return "this token has expired; ask an admin for a new one"
    if state == "revoked":
        return "this token was revoked; ask an admin for a new one"
    return "this token is not valid; check that it was copied whole"


def _unauthorized(detail: str, *, error: str | None) -> ApiProblem:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return ApiProblem(401, "unauthorized", "Unauthorized", detail,
                      headers={"WWW-Authenticate": challenge})
