"""What data planes send back: their refusals, merged into the request log.

A data plane (a host running the engine in control-plane mode) aggregates its refusals as the
recorder of this application does and posts them in batches (:mod:`cors_control.wire`). Its
rows are another host's text: each string is made storable here as the recorder makes its
own (control characters escaped, cut to the column), a rule id that names no rule is dropped
(the row keeps its rule path), and the rows are merged with the same upsert, counts added.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cors_control.database.log_sink import upsert_refusals
from cors_control.refusals import storable
from cors_control.vocabulary import LOG_MODES
from cors_control.wire import RefusalRow

from ..extensions import db
from ..models import RequestLogEntry, Rule
from .access import Actor, require_data_plane
from .errors import FieldError, ValidationError

_columns = RequestLogEntry.__table__.c
_TEXT = ("rule_path", "tenant", "origin", "reason", "detail", "mode", "path", "method",
         "request_method", "request_headers", "user_agent", "referer")
# A row's times: not before this (2000-01-01), not more than a day ahead of this host.
_EARLIEST = 946_684_800.0
_AHEAD = 86_400.0
# A row's count: far above what one bucket of one key sees, far below what adding overflows.
MAX_COUNT = 10**12


def store_refusals(rows: Sequence[RefusalRow], *, actor: Actor) -> int:
    """Merge *rows* into the request log, all or nothing; returns how many were stored."""
    require_data_plane(actor, to="send refusals")
    now = time.time()
    errors = [error for index, row in enumerate(rows) for error in _check(row, index, now)]
    if errors:
        raise ValidationError(errors)
    known = _existing_rule_ids({row.rule_id for row in rows if row.rule_id is not None})
    stored = sorted((_storable_row(row, known) for row in rows), key=_key)
    upsert_refusals(db.session.connection(), stored)
    db.session.commit()
    return len(stored)


def _check(row: RefusalRow, index: int, now: float) -> list[FieldError]:
    where = f"rows[{index}]"
    errors = []
    for name in ("bucket_start", "first_seen", "last_seen"):
        if not _EARLIEST <= getattr(row, name) <= now + _AHEAD:
            errors.append(FieldError(f"{where}.{name}", "must be a time after 2000 and not "
                                     "more than a day ahead of the control plane's clock"))
    if row.first_seen > row.last_seen:
        errors.append(FieldError(f"{where}.first_seen", "must not be after last_seen"))
    if row.count > MAX_COUNT:
        errors.append(FieldError(f"{where}.count", f"must be at most {MAX_COUNT}"))
    if row.mode not in LOG_MODES:
        errors.append(FieldError(f"{where}.mode", f"must be one of {', '.join(LOG_MODES)}"))
    return errors


def _existing_rule_ids(ids: set[int]) -> set[int]:
    if not ids:
        return set()
    # Ids past 32 bits name no rule (and PostgreSQL would refuse to compare them).
    wanted = [rule_id for rule_id in ids if 0 < rule_id < 2**31]
    return set(db.session.scalars(sa.select(Rule.id).where(Rule.id.in_(wanted)))) \
        if wanted else set()


def _storable_row(row: RefusalRow, known: set[int]) -> RefusalRow:
    text: dict[str, Any] = {name: storable(getattr(row, name), _columns[name].type.length)
                            for name in _TEXT}
    return dataclasses.replace(row, **text,
                               rule_id=row.rule_id if row.rule_id in known else None)


def _key(row: RefusalRow) -> tuple[float, str, str, str, str, str, str]:
    """The request log's key, the order every writer takes its row locks in."""
    return (row.bucket_start, row.rule_path, row.tenant, row.origin, row.reason, row.detail,
            row.mode)
