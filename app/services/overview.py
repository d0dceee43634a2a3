"""The overview's figures, each read with one aggregate query (never one query per row).

Counts of rules and origins, the policy version, the processes that report which version they
serve, refusals per hour over the last day and the most refused origins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_app_context

from cors_control.refusals import OVERFLOW
from cors_control.vocabulary import DRAFT, MODES, REPORT_ONLY

from ..extensions import db
from ..models import (
    AllowedOrigin,
    EngineProcess,
    PolicyState,
    RequestLogEntry,
    Rule,
    Tenant,
)
from .access import (
    Actor,
    visible_log_rows,
    visible_origin_rows,
    visible_rules,
    whole_platform,
)
from .request_log import planned_by_period

# A serving process reports every few seconds (the heartbeat). One not heard from for
# SILENT_AFTER is marked silent; one not heard from for PROCESS_HORIZON has stopped: it is not
# listed, and housekeeping deletes its row. A process is stale only when it serves an older
# version than the policy's and had STALE_GRACE (or three refresh intervals, if longer) since
# the change to load it.
SILENT_AFTER = timedelta(seconds=30)
PROCESS_HORIZON = timedelta(minutes=3)
STALE_GRACE = timedelta(seconds=10)
MAX_PROCESSES = 200
CHART_HOURS = 24
TOP_ORIGINS = 10
# The largest sums per group key summed again on their strings (see top_refused_origins).
CANDIDATES = 100


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """A process as it last reported, and why it is stale (empty when it is current)."""

    id: str
    host: str
    pid: int
    policy_version: int | None
    last_check: datetime
    started_at: datetime
    last_error: str
    seconds_since_check: int
    stale_reasons: tuple[str, ...]
    loading_version: int | None = None  # the policy moved moments ago: not stale yet

    @property
    def stale(self) -> bool:
        return bool(self.stale_reasons)

    @property
    def silent(self) -> bool:
        """Not heard from for a while (it stops being listed after :data:`PROCESS_HORIZON`)."""
        return self.seconds_since_check > SILENT_AFTER.total_seconds()

    @property
    def since_check(self) -> str:
        return duration_text(self.seconds_since_check)


@dataclass(frozen=True, slots=True)
class HourOfRefusals:
    start: datetime
    enforce: int = 0
    report_only: int = 0

    @property
    def total(self) -> int:
        return self.enforce + self.report_only


@dataclass(frozen=True, slots=True)
class ReasonOfRefusals:
    reason: str
    enforce: int = 0
    report_only: int = 0

    @property
    def total(self) -> int:
        return self.enforce + self.report_only


@dataclass(frozen=True, slots=True)
class RefusalChart:
    """Refused requests per hour, oldest hour first; the last hour is the current one. Also
    the same requests by reason, the most frequent first."""

    hours: list[HourOfRefusals]
    reasons: list[ReasonOfRefusals] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(hour.total for hour in self.hours)

    @property
    def peak(self) -> HourOfRefusals:
        return max(self.hours, key=lambda hour: hour.total)


@dataclass(frozen=True, slots=True)
class RefusedOrigin:
    origin: str
    rule_path: str  # "" when no rule governed the request
    reason: str
    mode: str
    count: int
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class Overview:
    rules_by_mode: dict[str, int]
    origins_total: int
    origins_expired: int
    tenants: int
    policy_version: int
    processes: list[ProcessStatus]
    chart: RefusalChart
    top_origins: list[RefusedOrigin]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def rules_total(self) -> int:
        return sum(self.rules_by_mode.values())

    @property
    def stale_processes(self) -> int:
        return sum(1 for process in self.processes if process.stale)


def load_overview(*, now: datetime | None = None, actor: Actor | None = None) -> Overview:
    """The figures *actor* may see: for a tenant role, its visible rules and origins and its
    refusals, and no processes (they serve the whole platform)."""
    now = now or datetime.now(UTC)
    counts = _counts(now, actor)
    version = counts.policy_version or 0
    scoped = not whole_platform(actor)
    return Overview(
        rules_by_mode={mode: getattr(counts, _mode_label(mode)) or 0 for mode in MODES},
        origins_total=counts.origins or 0,
        origins_expired=counts.expired or 0,
        tenants=0 if scoped else counts.tenants or 0,
        policy_version=version,
        processes=[] if scoped else processes(version, now=now,
                                              changed_at=counts.policy_changed_at),
        chart=refusal_chart(now=now, actor=actor),
        top_origins=top_refused_origins(now=now, actor=actor),
        at=now,
    )


def processes(current_version: int, *, now: datetime,
              changed_at: datetime | None = None) -> list[ProcessStatus]:
    """Serving processes heard from within :data:`PROCESS_HORIZON`, stale ones first, then
    silent ones. *changed_at*: when the policy reached *current_version* (a process gets
    :func:`stale_grace` from then on to load it)."""
    rows = db.session.scalars(
        sa.select(EngineProcess)
        .where(EngineProcess.last_check >= now - PROCESS_HORIZON)
        .order_by(EngineProcess.last_check.desc())
        .limit(MAX_PROCESSES)
    ).all()
    deadline = (changed_at or datetime.min.replace(tzinfo=UTC)) + stale_grace()
    statuses = [_status(row, current_version, deadline, now) for row in rows]
    return sorted(statuses, key=lambda p: (not p.stale, not p.silent, p.host, p.pid))


def stale_grace() -> timedelta:
    """How long after a policy change a process may still serve the version before it:
    :data:`STALE_GRACE`, or three of the app's refresh intervals if that is longer."""
    interval = current_app.config.get("CORS_REFRESH_INTERVAL", 0.5) if has_app_context() \
        else 0.5
    return max(STALE_GRACE, timedelta(seconds=3 * float(interval)))


def forget_stopped_processes(*, now: datetime | None = None) -> int:
    """Delete the rows of processes not heard from within :data:`PROCESS_HORIZON` (they
    stopped without withdrawing: killed, crashed, their host gone); returns how many."""
    now = now or datetime.now(UTC)
    result = db.session.execute(
        sa.delete(EngineProcess).where(EngineProcess.last_check < now - PROCESS_HORIZON))
    db.session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def refusal_chart(*, now: datetime, actor: Actor | None = None) -> RefusalChart:
    """Summed counts per hour and mode, and per reason and mode, over the last
    :data:`CHART_HOURS` hours (one query)."""
    first_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) \
        - timedelta(hours=CHART_HOURS - 1)
    table = RequestLogEntry
    rows = db.session.execute(
        sa.select(table.bucket_start, table.mode, table.reason, sa.func.sum(table.count))
        # A row's last_seen is never before its bucket starts: the second condition changes
        # nothing but lets the database use the last_seen index.
        .where(table.bucket_start >= first_hour, table.last_seen >= first_hour,
               table.mode != DRAFT, visible_log_rows(actor))
        .group_by(table.bucket_start, table.mode, table.reason)
    ).all()
    enforce = [0] * CHART_HOURS
    report_only = [0] * CHART_HOURS
    by_reason: dict[str, list[int]] = {}  # reason: [enforce, report-only]
    for bucket_start, mode, reason, count in rows:
        index = int((bucket_start - first_hour).total_seconds() // 3600)
        if 0 <= index < CHART_HOURS:
            column = 1 if mode == REPORT_ONLY else 0
            (report_only if column else enforce)[index] += int(count or 0)
            by_reason.setdefault(reason, [0, 0])[column] += int(count or 0)
    reasons = sorted((ReasonOfRefusals(reason, *counts) for reason, counts in by_reason.items()),
                     key=lambda r: (-r.total, r.reason))
    return RefusalChart([
        HourOfRefusals(first_hour + timedelta(hours=i), enforce[i], report_only[i])
        for i in range(CHART_HOURS)
    ], reasons)


def top_refused_origins(*, now: datetime, limit: int = TOP_ORIGINS,
                        actor: Actor | None = None) -> list[RefusedOrigin]:
    """The origins refused most often in the last 24 hours, by rule, reason and mode; equal
    counts in origin order.

    Summed on each row's ``group_key`` (a number for its origin, rule, reason and mode) first:
    the last day holds tens of thousands of groups, and sorting them on four strings took most
    of the overview's time. The :data:`CANDIDATES` largest sums are then summed again on
    their strings, with the rows that have no key. That gives the same list as summing every
    group on its strings (even when two groups share a number), unless a row has no key (an
    engine older than migration 0021 wrote it) or the *limit*-th largest may tie with a
    group left out: then the list is summed on the strings alone, one statement more
    (:func:`_top_refused_origins_by_strings`)."""
    table = RequestLogEntry
    since = now - timedelta(hours=24)
    in_window = (table.last_seen >= since, table.reason != OVERFLOW, table.origin != "",
                 table.mode != DRAFT, visible_log_rows(actor))
    cap = max(CANDIDATES, 2 * limit)
    # A row has a key only if it may be listed. Read from ix_request_log_sums (the period),
    # not in ix_request_log_group's order (every row of the log).
    key = planned_by_period(table.group_key)
    total = sa.func.sum(table.count).label("total")
    found = (sa.select(key.label("key"), total)
             .where(table.last_seen >= since, table.group_key.is_not(None),
                    visible_log_rows(actor))
             .group_by(key).order_by(total.desc()).limit(cap).cte("found"))
    columns = (table.origin, table.rule_path, table.reason, table.mode, table.count,
               table.last_seen, table.group_key)
    read = sa.union_all(
        sa.select(*columns).where(*in_window, table.group_key.in_(sa.select(found.c.key))),
        sa.select(*columns).where(*in_window, table.group_key.is_(None)),
    ).subquery("read")
    summed = sa.func.sum(read.c.count).label("total")
    rows = db.session.execute(
        sa.select(read.c.origin, read.c.rule_path, read.c.reason, read.c.mode, summed,
                  sa.func.max(read.c.last_seen),
                  sa.func.sum(sa.func.count() - sa.func.count(read.c.group_key)).over()
                  .label("unkeyed"),
                  sa.select(sa.func.count()).select_from(found).scalar_subquery()
                  .label("keys"),
                  sa.select(sa.func.min(found.c.total)).scalar_subquery().label("smallest"))
        .group_by(read.c.origin, read.c.rule_path, read.c.reason, read.c.mode)
        .order_by(summed.desc(), read.c.origin)
        .limit(limit)
    ).all()
    if rows and _summed_apart(rows, cap, limit):
        return _top_refused_origins_by_strings(in_window, limit)
    return [RefusedOrigin(origin, rule_path, reason, mode, int(count), last_seen)
            for origin, rule_path, reason, mode, count, last_seen, *_ in rows]


def _summed_apart(rows: Sequence[sa.Row], cap: int, limit: int) -> bool:
    """Whether groups left out of the candidates may belong in the list (see
    :func:`top_refused_origins`): a row without a key (its group's other rows may be left
    out), or a full set of candidates whose smallest sum reaches the *limit*-th group's (a
    group left out may tie with it). Otherwise every group left out has a key whose sum, and
    so its own, is below the *limit*-th: two groups sharing a key change nothing."""
    first = rows[0]
    if first.unkeyed:
        return True
    return first.keys >= cap and (len(rows) < limit or first.smallest >= rows[-1].total)


def duration_text(seconds: int) -> str:
    """``45 s``, ``12 min``, ``5 h``: precise enough to see that a process is behind."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


# -- internals ---------------------------------------------------------------------------------


def _counts(now: datetime, actor: Actor | None) -> sa.Row:
    """Rules per mode, origins, expired origins (those *actor* may see), tenants and the
    policy version in one round trip. The rules are read once for all modes (count of a
    CASE that is NULL for the other modes), not once per mode."""
    def count(model, *conditions) -> sa.ScalarSelect:
        return sa.select(sa.func.count()).select_from(model).where(*conditions) \
            .scalar_subquery()

    return db.session.execute(sa.select(
        *[sa.func.count(sa.case((Rule.mode == mode, 1))).label(_mode_label(mode))
          for mode in MODES],
        count(AllowedOrigin, visible_origin_rows(actor)).label("origins"),
        count(AllowedOrigin, AllowedOrigin.expires_at <= now, visible_origin_rows(actor))
        .label("expired"),
        count(Tenant).label("tenants"),
        sa.select(PolicyState.version).where(PolicyState.id == 1).scalar_subquery()
        .label("policy_version"),
        sa.select(PolicyState.changed_at).where(PolicyState.id == 1).scalar_subquery()
        .label("policy_changed_at"),
    ).select_from(Rule).where(visible_rules(actor))).one()


def _top_refused_origins_by_strings(in_window: tuple[sa.ColumnElement[bool], ...],
                                    limit: int) -> list[RefusedOrigin]:
    """:func:`top_refused_origins` summed on the origin, rule, reason and mode themselves."""
    table = RequestLogEntry
    total = sa.func.sum(table.count).label("total")
    rows = db.session.execute(
        sa.select(table.origin, table.rule_path, table.reason, table.mode, total,
                  sa.func.max(table.last_seen))
        .where(*in_window)
        .group_by(table.origin, table.rule_path, table.reason, table.mode)
        .order_by(total.desc(), table.origin)
        .limit(limit)
    ).all()
    return [RefusedOrigin(origin, rule_path, reason, mode, int(count), last_seen)
            for origin, rule_path, reason, mode, count, last_seen in rows]


def _mode_label(mode: str) -> str:
    return "mode_" + mode.replace("-", "_")


def _status(row: EngineProcess, current_version: int, deadline: datetime,
            now: datetime) -> ProcessStatus:
    """Stale: it checked after *deadline* (the policy change plus the grace) and still
    serves an older version, or none at all."""
    age = max(0, int((now - row.last_check).total_seconds()))
    reasons = []
    loading = None
    if row.policy_version is None:
        reasons.append("no policy loaded: it refuses cross-origin requests")
    elif row.policy_version < current_version:
        if row.last_check >= deadline:
            reasons.append(f"serves version {row.policy_version}, the policy is at "
                           f"{current_version}")
        else:
            loading = current_version
    return ProcessStatus(
        id=row.id, host=row.host, pid=row.pid, policy_version=row.policy_version,
        last_check=row.last_check, started_at=row.started_at,
        last_error=row.last_error or "", seconds_since_check=age,
        stale_reasons=tuple(reasons), loading_version=loading,
    )
