"""API tokens: admins issue them for the JSON admin API, see their state, and revoke them.

A token's secret is shown once, on the page that answers its creation, and never again: only
its SHA-256 hash is stored (:mod:`app.services.tokens`). That page is therefore rendered in
answer to the POST (a redirect would have to carry the secret in the session) and is marked
``Cache-Control: no-store``. The list shows name, role, tenant, state, expiry, last use and
creator, never a secret or a hash.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for

from ..extensions import db
from ..models import TENANT_ROLES, TOKEN_ROLES, ApiToken
from ..services.errors import Conflict, ServiceError, ValidationError
from ..services.tenants import list_tenants
from ..services.tokens import IssuedToken, create_token, list_tokens, revoke_token, token_state
from . import bp
from .access import current_actor, requires_platform
from .rendering import is_htmx, render

FORM_FIELDS = ("name", "role", "tenant", "expires_at")


@bp.get("/tokens")
@requires_platform("admin")
def tokens():
    return render("admin/tokens.html", "admin/_tokens.html", **_page_context())


@bp.post("/tokens")
@requires_platform("admin")
def token_create():
    form = {name: request.form.get(name, "").strip() for name in FORM_FIELDS}
    try:
        issued = create_token(form["name"], form["role"], actor=current_actor(),
                              tenant=form["tenant"] or None,
                              expires_at=form["expires_at"] or None)
    except (ValidationError, Conflict) as error:
        return render("admin/tokens.html", "admin/_tokens.html",
                      status=200 if is_htmx() else 422,
                      **_page_context(form=form, error=error))
    response = render("admin/tokens.html", "admin/_tokens.html",
                      **_page_context(issued=issued))
    response.headers["Cache-Control"] = "no-store"  # the one page that shows the secret
    return response


@bp.post("/tokens/<int:token_id>/revoke")
@requires_platform("admin")
def token_revoke(token_id: int):
    token = db.get_or_404(ApiToken, token_id)
    if token.revoked_at is not None:
        message = f"Token {token.name} was already revoked; nothing changed."
    else:
        revoke_token(token.name, actor=current_actor())
        message = f"Revoked token {token.name}: it stops working at once."
    if is_htmx():
        return render("admin/tokens.html", "admin/_tokens.html",
                      **_page_context(notice=message))
    flash(message)
    return redirect(url_for("admin.tokens"))


def _page_context(*, form: dict[str, str] | None = None, error: ServiceError | None = None,
                  issued: IssuedToken | None = None, notice: str | None = None) \
        -> dict[str, Any]:
    return {
        "tokens": [(token, token_state(token)) for token in list_tokens()],
        "issued": issued,
        "roles": TOKEN_ROLES,
        "tenant_roles": TENANT_ROLES,
        "tenants": list_tenants(),
        "form": form or dict.fromkeys(FORM_FIELDS, "") | {"role": "viewer"},
        "field_errors": error.by_field() if isinstance(error, ValidationError) else {},
        "form_error": str(error) if isinstance(error, Conflict) else None,
        "notice": notice,
    }


