"""The request log: refused origins and failed preflights, newest first, with the CLI's and
the dashboard's filters (:func:`app.services.request_log.validate_filter`)."""

from __future__ import annotations

import sqlalchemy as sa

from ..extensions import db
from ..models import RequestLogEntry, Rule, Tenant
from ..services import policy
from ..services.request_log import _filtered, entry_to_dict, validate_filter
from . import bp
from .auth import current_actor
from .inputs import PageRequest, page_of, text_arg

NEWEST_FIRST = (RequestLogEntry.last_seen.desc(), RequestLogEntry.id.desc())


@bp.get("/log")
def log():
    filters = validate_filter(since=text_arg("since"), rule=text_arg("rule"),
                              reason=text_arg("reason"), mode=text_arg("mode"),
                              origin=text_arg("origin"))
    paging = PageRequest.from_args()
    query = _filtered(sa.select(RequestLogEntry), filters).order_by(*NEWEST_FIRST)
    actor = current_actor()
    if actor.scoped:
        query = query.where(_seen_by(actor))
    pagination = db.paginate(query, page=paging.page, per_page=paging.per_page,
                             max_per_page=paging.per_page, error_out=False)
    return page_of(pagination, entry_to_dict)


def _seen_by(actor: policy.Actor) -> sa.ColumnElement[bool]:
    """A tenant role sees the rows of its own rules, and on the shared rules it can see, the
    rows of requests that named it."""
    own_rules = sa.select(Rule.id).where(Rule.tenant_id == actor.tenant_id)
    visible = sa.select(Rule.id).where(policy.visible_rules(actor))
    slug = sa.select(Tenant.slug).where(Tenant.id == actor.tenant_id).scalar_subquery()
    return sa.or_(
        RequestLogEntry.rule_id.in_(own_rules),
        sa.and_(RequestLogEntry.rule_id.in_(visible), RequestLogEntry.tenant == slug),
    )
