"""The dashboard: one blueprint, one module per area, every view behind a role check.

The admin surface is excluded from the CORS engine (``CORS_EXCLUDED_PREFIXES``) and sends
security headers (:mod:`app.security`). Views act as :func:`.access.current_actor`, so the
services scope every read and write to what the signed-in user's role and tenant allow.
"""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user
from werkzeug.exceptions import Forbidden as HTTPForbidden
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import NotFound as HTTPNotFound
from werkzeug.wrappers import Response

from ..extensions import login_manager
from ..services.errors import Forbidden, NotFound
from ..services.limits import body_limit_text, check_ids
from ..services.tenants import tenant_slug
from ..timefmt import utc_text
from .access import has_role, is_platform_user
from .rendering import render

bp = Blueprint("admin", __name__)
# Templates write every time through one filter: {{ moment|utc }}, |utc("minutes"), |utc("iso").
bp.add_app_template_filter(utc_text, "utc")


@bp.before_request
def require_sign_in():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.before_request
def refuse_impossible_ids() -> None:
    """An id past the database's range names nothing: 404, before it reaches SQL."""
    check_ids(request.view_args)


@bp.app_errorhandler(413)
def _too_large(error: HTTPException) -> HTTPException | Response:
    """A form too large for the dashboard: a page that says the limit, not a bare error."""
    if request.blueprint not in ("admin", "auth"):
        return error
    return render("admin/too_large.html", status=413,
                  limit=body_limit_text(request.max_content_length))


@bp.app_context_processor
def role_helpers() -> dict:
    return {"has_role": has_role, "is_platform_user": is_platform_user,
            "current_tenant_slug": lambda: tenant_slug(current_user.tenant_id)}


@bp.errorhandler(NotFound)
def _not_found(error: NotFound) -> Response:
    """Another tenant's object answers as a missing one does."""
    return error_pages.error_page(HTTPNotFound(description=str(error)))


@bp.errorhandler(Forbidden)
def _forbidden(error: Forbidden) -> Response:
    """The role may not make this change; the service's message says why."""
    return error_pages.error_page(HTTPForbidden(description=str(error)))


from . import (  # noqa: E402,F401
    alerts,
    audit,
    drafts,
    error_pages,
    impact,
    origin_lists,
    overview,
    policy_file,
    request_log,
    rules,
    simulator,
    tenants,
    tokens,
    users,
)
