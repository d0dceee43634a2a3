"""The dashboard: one blueprint, one module per area, every view behind a role check.

The admin surface is excluded from the CORS engine (``CORS_EXCLUDED_PREFIXES``) and sends
security headers (:mod:`app.security`).
"""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from ..extensions import login_manager
from .access import has_role

bp = Blueprint("admin", __name__)


@bp.before_request
def require_sign_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.app_context_processor
def role_helpers() -> dict:
    return {"has_role": has_role}


from . import audit, overview, request_log, rules, simulator, users  # noqa: E402,F401
