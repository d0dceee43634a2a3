"""The request log: refused origins and failed preflights, newest first, with the CLI's and
the dashboard's filters (:func:`app.services.request_log.validate_filter`)."""

from __future__ import annotations

from ..services.request_log import entry_to_dict, query_log, validate_filter
from . import bp
from .auth import current_actor
from .inputs import PageRequest, page_of_rows, text_arg


@bp.get("/log")
def log():
    """A tenant role sees the rows of its own rules, and on the shared rules it can see, the
    rows of requests that named it."""
    filters = validate_filter(since=text_arg("since"), rule=text_arg("rule"),
                              reason=text_arg("reason"), mode=text_arg("mode"),
                              origin=text_arg("origin"))
    paging = PageRequest.from_args()
    rows, total = query_log(filters, page=paging.page, per_page=paging.per_page,
                            actor=current_actor())
    return page_of_rows(rows, total, paging, entry_to_dict)
