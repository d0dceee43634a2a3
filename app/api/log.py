"""The request log: refused origins and failed preflights, newest first, with the CLI's and
the dashboard's filters (:func:`app.services.request_log.validate_filter`)."""

from __future__ import annotations

from ..services.request_log import (
    entry_to_dict,
    group_log,
    group_to_dict,
    query_log,
    validate_filter,
    validate_grouping,
)
from ..timefmt import iso_utc
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
    group_by = text_arg("group")
    if group_by is not None:
        # ?group=origin|rule|reason: one item per group, with its trend over the period.
        group_by, sort = validate_grouping(group_by, text_arg("sort"))
        grouped = group_log(filters, group_by=group_by, sort=sort, page=paging.page,
                            per_page=paging.per_page, actor=current_actor())
        body = page_of_rows(grouped.groups, grouped.total, paging,
                            lambda group: group_to_dict(group, grouped))
        return {**body, "group": group_by, "sort": sort,
                "period": {"start": iso_utc(grouped.period_start),
                           "end": iso_utc(grouped.period_end),
                           "buckets": len(grouped.groups[0].trend) if grouped.groups else 0}}
    rows, total = query_log(filters, page=paging.page, per_page=paging.per_page,
                            actor=current_actor())
    return page_of_rows(rows, total, paging, entry_to_dict)
