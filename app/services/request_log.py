"""Reading the request log: filters shared by the CLI, the dashboard and the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from cors_control.decision import REFUSAL_REASONS
from cors_control.refusals import OVERFLOW
from cors_control.vocabulary import LOG_MODES

from ..extensions import db
from ..models import RequestLogEntry
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
    exact_origin: str | None = None  # exactly this origin (one group of the grouped view)


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
    if filters.exact_origin is not None:
        query = query.where(table.origin == filters.exact_origin)
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
    """Delete rows last seen before the retention period (``REQUEST_LOG_RETENTION_DAYS`` unless
    given); returns how many."""
    days = retention_days if retention_days is not None else float(
        current_app.config.get("REQUEST_LOG_RETENTION_DAYS", 30))
    cutoff = datetime.now(UTC) - timedelta(days=days)
    table = RequestLogEntry.__table__
    with db.engine.begin() as conn:
        result = conn.execute(sa.delete(table).where(table.c.last_seen < cutoff))
    return result.rowcount or 0


# -- grouped ------------------------------------------------------------------------------

GROUPS = ("origin", "rule", "reason")
SORTS = ("count", "last_seen")
TREND_BUCKETS = 24
# Routes, reasons and origins named per group; more are counted, not listed.
GROUP_NAMES_SHOWN = 5
_GROUP_COLUMNS = {"origin": RequestLogEntry.origin, "rule": RequestLogEntry.rule_path,
                  "reason": RequestLogEntry.reason}


@dataclass(frozen=True, slots=True)
class LogGroup:
    """Every row of one origin (rule path, reason) in the period, summed: its trend has one
    count per bucket of the period, oldest first."""

    key: str
    count: int
    rows: int
    first_seen: datetime
    last_seen: datetime
    sample_id: int  # the group's newest row: what its fix and sample are taken from
    routes: tuple[str, ...] = ()  # rule paths as recorded ("" for no rule), most refused first
    reasons: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    more_routes: int = 0
    more_reasons: int = 0
    more_origins: int = 0
    trend: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupPage:
    group_by: str
    sort: str
    groups: list[LogGroup]
    total: int  # groups in all, on every page
    period_start: datetime
    period_end: datetime

    @property
    def bucket_seconds(self) -> float:
        span = (self.period_end - self.period_start).total_seconds()
        return max(span, 1.0) / TREND_BUCKETS


def validate_grouping(group_by: str | None, sort: str | None) -> tuple[str, str]:
    """(group, sort), defaults filled in; errors name the ``group`` and ``sort`` fields."""
    errors = []
    group_by = group_by or "origin"
    sort = sort or "count"
    if group_by not in GROUPS:
        errors.append(FieldError("group", f"group by one of {', '.join(GROUPS)}"))
    if sort not in SORTS:
        errors.append(FieldError("sort", "sort by count or last_seen"))
    if errors:
        raise ValidationError(errors)
    return group_by, sort


def group_log(filters: LogFilter, *, group_by: str = "origin", sort: str = "count",
              page: int = 1, per_page: int = 50, actor: Actor | None = None,
              now: datetime | None = None) -> GroupPage:
    """One page of the groups of matching rows *actor* may see, by *group_by* (``origin``,
    ``rule`` or ``reason``), largest count (or latest ``last_seen``) first.

    Three or four queries whatever the size of the log: the page of groups with the number
    of groups (one aggregation, counted once), then for the page's keys only their routes
    and reasons, their most refused origins (grouped by rule or reason), and their counts
    per recorded bucket, which become the trend.
    """
    group_by, sort = validate_grouping(group_by, sort)
    per_page = max(1, min(per_page, MAX_PAGE_SIZE))
    page = max(1, page)
    key = _GROUP_COLUMNS[group_by]
    found = _group_page(filters, actor, key, sort, page, per_page)
    end = now or datetime.now(UTC)
    if not found:
        return GroupPage(group_by, sort, [], 0, filters.since or end, end)
    keys = [row[0] for row in found]
    start = filters.since or min(row[3] for row in found)
    start = min(start, end)
    names = _group_names(filters, actor, key, keys, group_by)
    trends = _group_trends(filters, actor, key, keys, start, end)
    groups = []
    for value, count, rows, first, last, sample_id, _total in found:
        named = names.get(value, _GroupNames())
        routes, reasons, origins = named.routes, named.reasons, named.origins
        groups.append(LogGroup(
            key=value, count=int(count or 0), rows=rows, first_seen=first, last_seen=last,
            sample_id=sample_id,
            routes=_most(routes), reasons=_most(reasons), origins=_most(origins),
            more_routes=max(0, len(routes) - GROUP_NAMES_SHOWN),
            more_reasons=max(0, len(reasons) - GROUP_NAMES_SHOWN),
            more_origins=named.more_origins,
            trend=tuple(trends.get(value, [0] * TREND_BUCKETS)),
        ))
    return GroupPage(group_by, sort, groups, found[0][6], start, end)


def _group_page(filters: LogFilter, actor: Actor | None, key: Any, sort: str, page: int,
                per_page: int) -> list[sa.Row]:
    """The page's groups, each (key, count, rows, first seen, last seen, newest row id,
    number of groups). The groups are counted from their aggregation, which the database
    computes once (a common table expression read twice), not by a window function over
    it: on SQLite that window copied every group once more and cost as much again as the
    aggregation when there are many (grouped by origin over a week)."""
    table = RequestLogEntry
    groups = _filtered(sa.select(
        key.label("key"), sa.func.sum(table.count).label("total"),
        sa.func.count(table.id).label("rows"), sa.func.min(table.first_seen).label("first"),
        sa.func.max(table.last_seen).label("last"), sa.func.max(table.id).label("newest")),
        filters, actor).group_by(key).cte("groups")
    order = (groups.c.total.desc(), groups.c.last.desc()) if sort == "count" \
        else (groups.c.last.desc(), groups.c.total.desc())
    counted = sa.select(sa.func.count()).select_from(groups).scalar_subquery()
    return list(db.session.execute(
        sa.select(*groups.c, counted.label("groups"))
        .order_by(*order, groups.c.key).limit(per_page).offset((page - 1) * per_page)
    ).all())


def _most(counts: dict[str, int]) -> tuple[str, ...]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(name for name, _count in ranked[:GROUP_NAMES_SHOWN])


def _group_names(filters: LogFilter, actor: Actor | None, key: Any, keys: list[str],
                 group_by: str) -> dict[str, _GroupNames]:
    """Per key: the counts of its routes and reasons and, grouped by rule or reason, its
    most refused origins and how many it has."""
    table = RequestLogEntry
    query = _filtered(sa.select(key, table.rule_path, table.reason, sa.func.sum(table.count)),
                      filters, actor).where(key.in_(keys)) \
        .group_by(key, table.rule_path, table.reason)
    names: dict[str, _GroupNames] = {}
    for value, rule_path, reason, count in db.session.execute(query):
        found = names.setdefault(value, _GroupNames())
        found.routes[rule_path] = found.routes.get(rule_path, 0) + int(count or 0)
        found.reasons[reason] = found.reasons.get(reason, 0) + int(count or 0)
    if group_by != "origin":
        for value, origin, count, origins in _most_origins(filters, actor, key, keys):
            found = names.setdefault(value, _GroupNames())
            found.origins[origin] = int(count or 0)
            found.origin_count = int(origins)
    return names


@dataclass(slots=True)
class _GroupNames:
    routes: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    origins: dict[str, int] = field(default_factory=dict)  # the most refused only
    origin_count: int = 0  # all of them

    @property
    def more_origins(self) -> int:
        return max(0, self.origin_count - GROUP_NAMES_SHOWN)


def _most_origins(filters: LogFilter, actor: Actor | None, key: Any,
                  keys: list[str]) -> sa.Result:
    """Per key, its :data:`GROUP_NAMES_SHOWN` most refused origins (key, origin, count,
    number of the key's origins). Ranked and counted by the database: a busy rule or a
    reason has tens of thousands of origins in a week, and sending them all to be ranked
    here took longer than finding them."""
    table = RequestLogEntry
    per_origin = _filtered(sa.select(key.label("key"), table.origin.label("origin"),
                                     sa.func.sum(table.count).label("count")),
                           filters, actor).where(key.in_(keys)) \
        .group_by(key, table.origin).subquery("per_origin")
    ranked = sa.select(
        per_origin,
        sa.func.row_number().over(partition_by=per_origin.c.key,
                                  order_by=(per_origin.c.count.desc(), per_origin.c.origin))
        .label("rank"),
        sa.func.count().over(partition_by=per_origin.c.key).label("origins"),
    ).subquery("ranked")
    return db.session.execute(
        sa.select(ranked.c.key, ranked.c.origin, ranked.c.count, ranked.c.origins)
        .where(ranked.c.rank <= GROUP_NAMES_SHOWN))


def _group_trends(filters: LogFilter, actor: Actor | None, key: Any, keys: list[str],
                  start: datetime, end: datetime) -> dict[str, list[int]]:
    """Per key: counts in :data:`TREND_BUCKETS` equal parts of the period, from the rows'
    recorded buckets (a row counts in the part its bucket starts in)."""
    table = RequestLogEntry
    bucket = planned_by_period(table.bucket_start)
    query = _filtered(sa.select(key, bucket, sa.func.sum(table.count)),
                      filters, actor).where(key.in_(keys)).group_by(key, bucket)
    span = max((end - start).total_seconds(), 1.0)
    trends: dict[str, list[int]] = {}
    for value, bucket_start, count in db.session.execute(query):
        at = bucket_start if bucket_start.tzinfo else bucket_start.replace(tzinfo=UTC)
        offset = (at - start).total_seconds()
        index = min(TREND_BUCKETS - 1, max(0, int(offset / span * TREND_BUCKETS)))
        trends.setdefault(value, [0] * TREND_BUCKETS)[index] += int(count or 0)
    return trends


def planned_by_period(column: Any) -> Any:
    """*column* unchanged, written so that SQLite cannot order by an index on it: grouped by
    (key, bucket) SQLite would otherwise walk the whole log in the unique key's order
    (bucket first) instead of reading the period from ix_request_log_window (and grouped by
    group_key, the whole log in ix_request_log_group's order). SQLite's unary
    ``+`` returns its operand as it is; other databases get the bare column."""
    if db.session.get_bind().dialect.name != "sqlite":
        return column
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def group_to_dict(group: LogGroup, page: GroupPage) -> dict[str, Any]:
    return {
        page.group_by: group.key if page.group_by != "rule" else (group.key or None),
        "count": group.count,
        "rows": group.rows,
        "first_seen": iso_utc(group.first_seen),
        "last_seen": iso_utc(group.last_seen),
        "routes": [route or None for route in group.routes],
        "reasons": list(group.reasons),
        **({"origins": list(group.origins)} if page.group_by != "origin" else {}),
        "more": {"routes": group.more_routes, "reasons": group.more_reasons,
                 **({"origins": group.more_origins} if page.group_by != "origin" else {})},
        "trend": list(group.trend),
        "sample_id": group.sample_id,
    }
