"""Reading the request log: filters shared by the CLI, the dashboard and the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..cors.decision import REFUSAL_REASONS
from ..cors.vocabulary import LOG_MODES
from ..extensions import db
from ..models import RequestLogEntry
from ..request_log.recorder import OVERFLOW
from ..request_log.recorder import prune as prune_rows
from ..timefmt import iso_utc
from .access import Actor, visible_log_rows, whole_platform
from .errors import FieldError, ValidationError
from .limits import MAX_LOOKBACK, whole_number

MAX_PAGE_SIZE = 500
REASONS = (*REFUSAL_REASONS, OVERFLOW)
_DURATION = re.compile(r"^([0-9]+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class LogFilter:
    since: datetime | None = None
    until: datetime | None = None
    rule: str | None = None  # a rule path; "" for requests no rule governed
    reason: str | None = None
    mode: str | None = None
    origin: str | None = None  # text contained in the origin, case-insensitive
    rule_id: int | None = None  # a rule's rows under every path it had (an indexed column)


def parse_duration(text: str, *, field: str = "since") -> timedelta:
    """``90s``, ``30m``, ``1h``, ``7d``, ``2w``."""
    match = _DURATION.match((text or "").strip().lower())
    if match is None:
        raise ValidationError([FieldError(field, "use a duration such as 30m, 1h, 7d or 2w")])
    amount = whole_number(match.group(1))
    seconds = _UNIT_SECONDS[match.group(2)]
    if amount is None or amount * seconds > MAX_LOOKBACK.total_seconds():
        raise ValidationError([FieldError(
            field, f"reach back at most {MAX_LOOKBACK.days}d (10 years); use a duration "
                   "such as 7d or 2w")])
    return timedelta(seconds=amount * seconds)


def validate_filter(*, since: str | None = None, rule: str | None = None,
                    reason: str | None = None, mode: str | None = None,
                    origin: str | None = None, rule_id: int | None = None) -> LogFilter:
    errors: list[FieldError] = []
    since_at = None
    if since:
        try:
            since_at = datetime.now(UTC) - parse_duration(since)
        except ValidationError as exc:
            errors.extend(exc.errors)
    if reason and reason not in REASONS:
        errors.append(FieldError("reason", f"reason must be one of {', '.join(REASONS)}"))
    if mode and mode not in LOG_MODES:
        errors.append(FieldError("mode", "mode must be enforce, report-only or draft"))
    if errors:
        raise ValidationError(errors)
    return LogFilter(since=since_at, rule=rule, reason=reason or None, mode=mode or None,
                     origin=origin or None, rule_id=rule_id)


def _filtered(query: sa.Select, filters: LogFilter, actor: Actor | None = None) -> sa.Select:
    table = RequestLogEntry
    if not whole_platform(actor):
        query = query.where(visible_log_rows(actor))
    if filters.since is not None:
        query = query.where(table.last_seen >= filters.since)
    if filters.until is not None:
        query = query.where(table.first_seen <= filters.until)
    if filters.rule is not None:
        query = query.where(table.rule_path == filters.rule)
        if filters.rule == "":
            # Rows without a rule have no rule id either; saying so lets the database use
            # the (rule_id, bucket_start) index instead of reading every row of the period.
            query = query.where(table.rule_id.is_(None))
    if filters.rule_id is not None:
        query = query.where(table.rule_id == filters.rule_id)
    if filters.reason is not None:
        query = query.where(table.reason == filters.reason)
    if filters.mode is not None:
        query = query.where(table.mode == filters.mode)
    if filters.origin:
        escaped = filters.origin.lower().replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_")
        query = query.where(sa.func.lower(table.origin).like(f"%{escaped}%", escape="\\"))
    return query


NEWEST_FIRST = (RequestLogEntry.last_seen.desc(), RequestLogEntry.id.desc())


def query_log(filters: LogFilter, *, page: int = 1, per_page: int = 50,
              count_limit: int | None = None,
              actor: Actor | None = None) -> tuple[list, int]:
    """One page of the rows *actor* may see, newest first, and the total count of matching
    rows.

    With *count_limit* the count stops there (a total equal to it means "at least"), which
    keeps the count cheap on a large log.
    """
    per_page = max(1, min(per_page, MAX_PAGE_SIZE))
    page = max(1, page)
    rows = db.session.scalars(
        _filtered(sa.select(RequestLogEntry), filters, actor)
        .order_by(*NEWEST_FIRST)
        .limit(per_page).offset((page - 1) * per_page)
    ).all()
    if len(rows) < per_page and (rows or page == 1):
        # The last page: the rows say how many there are, without counting them again.
        return list(rows), (page - 1) * per_page + len(rows)
    if count_limit is None:
        counted = _filtered(sa.select(sa.func.count(RequestLogEntry.id)), filters, actor)
    else:
        matching = _filtered(sa.select(RequestLogEntry.id), filters, actor).limit(count_limit)
        counted = sa.select(sa.func.count()).select_from(matching.subquery())
    total = db.session.scalar(counted)
    return list(rows), total or 0


def iter_log(filters: LogFilter, *, batch_size: int = 1000,
             actor: Actor | None = None) -> Iterator[RequestLogEntry]:
    """Every matching row *actor* may see, newest first, for exports of any size.

    Rows come in batches, each read in a transaction of its own that ends before the rows are
    used: a long export never holds a read transaction open, which on SQLite would lock out
    every writer (the recorder, policy changes) until the download ended. Each batch continues
    after the last row of the previous one (keyset), so a batch costs the same at any depth.
    Ending those transactions rolls the session back: call it with no pending changes.
    """
    after: tuple[datetime, int] | None = None
    while True:
        query = _filtered(sa.select(RequestLogEntry), filters, actor)
        if after is not None:
            # The first condition alone lets the database use the last_seen index.
            query = query.where(RequestLogEntry.last_seen <= after[0],
                                sa.tuple_(RequestLogEntry.last_seen, RequestLogEntry.id)
                                < sa.tuple_(*after))
        batch = db.session.scalars(query.order_by(*NEWEST_FIRST).limit(batch_size)).all()
        for entry in batch:
            db.session.expunge(entry)  # keeps its loaded values through the rollback
        db.session.rollback()
        yield from batch
        if len(batch) < batch_size:
            return
        after = (batch[-1].last_seen, batch[-1].id)


def entry_to_dict(entry: RequestLogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "bucket_start": iso_utc(entry.bucket_start),
        "rule": entry.rule_path or None,
        "rule_id": entry.rule_id,
        "origin": entry.origin,
        "reason": entry.reason,
        "detail": entry.detail,
        "mode": entry.mode,
        "count": entry.count,
        "first_seen": iso_utc(entry.first_seen),
        "last_seen": iso_utc(entry.last_seen),
        "sample": {
            "path": entry.path,
            "method": entry.method,
            "preflight": entry.preflight,
            "request_method": entry.request_method,
            "request_headers": entry.request_headers,
            "user_agent": entry.user_agent,
            "referer": entry.referer,
        },
    }


def prune_log(retention_days: float | None = None) -> int:
    days = retention_days if retention_days is not None else float(
        current_app.config.get("REQUEST_LOG_RETENTION_DAYS", 30))
    return prune_rows(db.engine, days)
