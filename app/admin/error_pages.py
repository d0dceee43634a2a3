"""Error pages of the dashboard: 403, 404, 405 and 500 in the layout, with the navigation.

Errors on the dashboard and sign-in pages (and unknown URLs under ``/admin``) render
``errors/http_error.html``; an htmx request gets the notice alone, aimed above the page
(``HX-Retarget``), so nothing typed is lost and no table cell fills with a page. The JSON API
keeps its problem documents; the governed API keeps its own answers. The 503 of an unreachable
database is :mod:`app.errors`'s, which must not touch the database.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from ..api import URL_PREFIX as API_PREFIX
from ..api.problems import problem
from ..extensions import db
from ..security import ADMIN_BLUEPRINTS
from . import bp
from .rendering import is_htmx, render

# What each page says beyond its status line: what probably happened, and where to go.
ADVICE = {
    403: "Your role does not allow this. Ask an admin for a role that does, or go back.",
    404: "There is nothing here: the link may be old, or the object was deleted or belongs "
         "to another tenant.",
    405: "This address does not accept that kind of request; use the page's own forms.",
    500: "Something went wrong on our side and nothing was changed by this request. Try "
         "again; if it keeps happening, the server's log has the details.",
}
# Where the htmx notice goes: above whatever the page shows.
HTMX_TARGET = "#main"
HTMX_SWAP = "afterbegin"


def error_page(error: HTTPException) -> Response:
    """The dashboard's page (or htmx notice) for an HTTP error."""
    code = error.code or 500
    description = error.description if code != 500 else None
    response = render("errors/http_error.html", "errors/_http_error.html", status=code,
                      code=code, name=error.name, description=description,
                      advice=ADVICE.get(code, ""))
    if is_htmx():
        response.headers["HX-Retarget"] = HTMX_TARGET
        response.headers["HX-Reswap"] = HTMX_SWAP
    response.headers.update(_allow(error))
    return response


def _allow(error: HTTPException) -> dict[str, str]:
    methods = getattr(error, "valid_methods", None)  # a MethodNotAllowed's
    return {"Allow": ", ".join(methods)} if error.code == 405 and methods else {}


def _on_dashboard() -> bool:
    if request.blueprint is not None:
        return request.blueprint in ADMIN_BLUEPRINTS
    return (request.path == "/admin" or request.path.startswith("/admin/")) \
        and not _under_api(request.path)


def _under_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def _http_error(error: HTTPException) -> HTTPException | Response:
    if _on_dashboard():
        return error_page(error)
    if _under_api(request.path) and request.blueprint is None:
        # An app-wide handler for a code shadows the API's routing handler: answer as it does.
        return problem(error.code or 500, (error.name or "error").lower().replace(" ", "-"),
                       error.name, error.description or "", headers=_allow(error))
    return error


def _server_error(error: InternalServerError) -> HTTPException | Response:
    if not _on_dashboard():
        return error
    db.session.rollback()  # the failed request may have left a broken transaction
    try:
        return error_page(error)
    except Exception:  # noqa: BLE001 - the error page itself failed: the plain answer
        return error


for _code in (403, 404, 405):
    bp.app_errorhandler(_code)(_http_error)
bp.app_errorhandler(500)(_server_error)
