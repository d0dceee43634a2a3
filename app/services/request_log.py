"""Reading the request log: filters shared by the CLI, the dashboard and the API."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..cors.decision import REFUSAL_REASONS
from ..extensions import db
from ..models import RequestLogEntry
from ..request_log.recorder import OVERFLOW
from ..request_log.recorder import prune as prune_rows
from .errors import FieldError, ValidationError

MAX_PAGE_SIZE = 500
REASONS = (*REFUSAL_REASONS, OVERFLOW)
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class LogFilter:
    since: datetime | None = None
    until: datetime | None = None
    rule: str | None = None  # a rule path; "" for requests no rule governed
    reason: str | None = None
    mode: str | None = None
    origin: str | None = None  # text contained in the origin, case-insensitive


def parse_duration(text: str, *, field: str = "since") -> timedelta:
    """``90s``, ``30m``, ``1h``, ``7d``, ``2w``."""
    match = _DURATION.match((text or "").strip().lower())
    if match is None:
        raise ValidationError([FieldError(field, "use a duration such as 30m, 1h, 7d or 2w")])
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def validate_filter(*, since: str | None = None, rule: str | None = None,
                    reason: str | None = None, mode: str | None = None,
                    origin: str | None = None) -> LogFilter:
    errors: list[FieldError] = []
    since_at = None
    if since:
        try:
            since_at = datetime.now(UTC) - parse_duration(since)
        except ValidationError as exc:
            errors.extend(exc.errors)
    if reason and reason not in REASONS:
        errors.append(FieldError("reason", f"reason must be one of {', '.join(REASONS)}"))
    if mode and mode not in ("enforce", "report-only"):
        errors.append(FieldError("mode", "mode must be enforce or report-only"))
    if errors:
        raise ValidationError(errors)
    return LogFilter(since=since_at, rule=rule, reason=reason or None, mode=mode or None,
                     origin=origin or None)


def _filtered(query: sa.Select, filters: LogFilter) -> sa.Select:
    table = RequestLogEntry
    if filters.since is not None:
        query = query.where(table.last_seen >= filters.since)
    if filters.until is not None:
        query = query.where(table.first_seen <= filters.until)
    if filters.rule is not None:
        query = query.where(table.rule_path == filters.rule)
    if filters.reason is not None:
        query = query.where(table.reason == filters.reason)
    if filters.mode is not None:
        query = query.where(table.mode == filters.mode)
    if filters.origin:
        escaped = filters.origin.lower().replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_")
        query = query.where(sa.func.lower(table.origin).like(f"%{escaped}%", escape="\\"))
    return query


def query_log(filters: LogFilter, *, page: int = 1, per_page: int = 50) -> tuple[list, int]:
    """One page of rows, newest first, and the total count of matching rows."""
    per_page = max(1, min(per_page, MAX_PAGE_SIZE))
    page = max(1, page)
    rows = db.session.scalars(
        _filtered(sa.select(RequestLogEntry), filters)
        .order_by(RequestLogEntry.last_seen.desc(), RequestLogEntry.id.desc())
        .limit(per_page).offset((page - 1) * per_page)
    ).all()
    total = db.session.scalar(_filtered(sa.select(sa.func.count(RequestLogEntry.id)), filters))
    return list(rows), total or 0


def entry_to_dict(entry: RequestLogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "bucket_start": _iso(entry.bucket_start),
        "rule": entry.rule_path or None,
        "rule_id": entry.rule_id,
        "origin": entry.origin,
        "reason": entry.reason,
        "detail": entry.detail,
        "mode": entry.mode,
        "count": entry.count,
        "first_seen": _iso(entry.first_seen),
        "last_seen": _iso(entry.last_seen),
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


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
