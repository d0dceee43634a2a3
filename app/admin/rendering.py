"""One helper chooses a full page or an htmx fragment, from the same partial template."""

from __future__ import annotations

from typing import Any

from flask import make_response, render_template, request
from werkzeug.wrappers import Response


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true" and \
        request.headers.get("HX-History-Restore-Request") != "true"


def render(page: str, fragment: str | None = None, *, status: int = 200,
           **context: Any) -> Response:
    """Render *fragment* for an htmx request, else *page* (which includes the fragment).

    The response varies on ``HX-Request`` so caches never mix the two.
    """
    template = fragment if fragment is not None and is_htmx() else page
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response
