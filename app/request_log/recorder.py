"""The request log recorder: refusals aggregated in memory, written in batches.

A request only adds to an in-memory aggregate (a dict update under a lock). A background
flusher writes the aggregate every ``flush_interval`` seconds in one transaction, with upserts
that add to the counts of existing rows. Memory is bounded: at most ``max_keys`` distinct
keys wait between flushes; past that, events are counted in an overflow counter that is
written as a row of its own. When the database is down, the aggregate is kept (within the
same bound) and written after recovery. Nothing here can fail or slow a request.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..cors.decision import NO_RULE, Decision
from ..cors.text import printable, truncate
from ..models import RequestLogEntry

logger = logging.getLogger("app.cors")

OVERFLOW = "overflow"
_table = RequestLogEntry.__table__

# (bucket start, rule path, tenant, origin, reason, detail, mode)
Key = tuple[float, str, str, str, str, str, str]


@dataclass(slots=True)
class Aggregate:
    """Counts for one key, with a sample of its first request."""

    rule_id: int | None
    count: int
    first_seen: float
    last_seen: float
    path: str
    method: str
    preflight: bool
    request_method: str
    request_headers: str
    user_agent: str
    referer: str

    def merge(self, other: Aggregate) -> None:
        self.count += other.count
        if other.first_seen < self.first_seen:
            self.first_seen = other.first_seen
        if other.last_seen > self.last_seen:
            self.last_seen = other.last_seen


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    flush_interval: float = 2.0
    bucket_seconds: int = 3600
    max_keys: int = 10_000
    retention_days: float = 30.0
    log_interval: float = 60.0
    api_prefixes: tuple[str, ...] = ("/api/",)


_live_recorders: weakref.WeakSet[RequestLogRecorder] = weakref.WeakSet()


class RequestLogRecorder:
    """Collects refusals from the engine and writes them to the ``request_log`` table."""

    def __init__(self, engine: sa.Engine, settings: RecorderSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or RecorderSettings()
        self._pending: dict[Key, Aggregate] = {}
        self._overflow = 0
        self._overflow_first: float | None = None
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._logged: dict[Key, float] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.flush_failures = 0
        self.overflow_total = 0
        self.rows_written = 0
        _live_recorders.add(self)

    # -- the request path ----------------------------------------------------------------------

    def record(self, decision: Decision, request) -> None:
        """Engine listener: add a refusal (or a report-only finding) to the aggregate."""
        if not decision.recordable:
            return
        path = request.path
        if decision.rule is None:
            if decision.reason == NO_RULE and not path.startswith(self.settings.api_prefixes):
                return
            rule_path, rule_id, mode = "", None, "enforce"
        else:
            rule_path, rule_id = decision.rule.path, decision.rule.rule_id
            mode = "report-only" if decision.report_only else "enforce"
        environ = request.environ  # read directly: absent headers cost nothing here
        origin = truncate(environ.get("HTTP_ORIGIN") or "", 300)
        now = time.time()
        bucket = now - now % self.settings.bucket_seconds
        tenant = truncate(decision.tenant or "", 100)
        key = (bucket, rule_path, tenant, origin, decision.reason,
               truncate(decision.detail, 200), mode)
        with self._lock:
            aggregate = self._pending.get(key)
            if aggregate is not None:
                aggregate.count += 1
                aggregate.last_seen = now
                return
            if len(self._pending) >= self.settings.max_keys:
                self._overflow += 1
                self.overflow_total += 1
                if self._overflow_first is None:
                    self._overflow_first = now
                return
            if self._thread is None:
                self.start()
            self._pending[key] = Aggregate(
                rule_id=rule_id,
                count=1,
                first_seen=now,
                last_seen=now,
                path=truncate(path, 500),
                method=truncate(request.method, 20),
                preflight=decision.preflight,
                request_method=truncate(
                    environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD") or "", 40),
                request_headers=truncate(
                    environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS") or "", 500),
                user_agent=truncate(environ.get("HTTP_USER_AGENT") or "", 300),
                referer=truncate(environ.get("HTTP_REFERER") or "", 500),
            )
            should_log = (
                logger.isEnabledFor(logging.INFO)
                and len(self._logged) < self.settings.max_keys
                and now - self._logged.get(key[1:], 0.0) >= self.settings.log_interval
            )
            if should_log:
                self._logged[key[1:]] = now  # type: ignore[index]
        if should_log:
            logger.info(
                "CORS %s %s: origin=%s rule=%s method=%s path=%s%s",
                "would refuse (report-only)" if mode == "report-only" else "refused",
                decision.reason, printable(origin), printable(rule_path) or "(none)",
                printable(request.method), printable(truncate(path, 200)),
                f" detail={printable(decision.detail)}" if decision.detail else "",
            )

    # -- the flusher ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher; called by the first recorded refusal of each process."""
        if self._thread is None and not self._stopped.is_set():
            self._thread = threading.Thread(target=self._run, name="cors-log-flusher",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.settings.flush_interval):
            self.flush()

    def flush(self) -> int:
        """Write what is pending in one transaction; returns the number of rows upserted.

        On failure everything taken is put back (within the key bound) for the next flush.
        """
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                overflow, self._overflow = self._overflow, 0
                overflow_first, self._overflow_first = self._overflow_first, None
                self._forget_old_log_keys()
            if not pending and not overflow:
                return 0
            rows = [_row(key, aggregate) for key, aggregate in pending.items()]
            if overflow:
                rows.append(_overflow_row(overflow, overflow_first or time.time(),
                                          self.settings.bucket_seconds))
            try:
                with self.engine.begin() as conn:
                    _upsert(conn, rows)
            except Exception as exc:
                self.flush_failures += 1
                self._put_back(pending, overflow, overflow_first)
                if not self._failing:
                    logger.error("request log flush failed; keeping %d entries in memory "
                                 "until the database is back: %s", len(rows),
                                 printable(str(exc).splitlines()[0] if str(exc) else
                                           type(exc).__name__))
                self._failing = True
                return 0
            if self._failing:
                logger.warning("request log flush succeeded again")
                self._failing = False
            self.rows_written += len(rows)
            return len(rows)

    def _put_back(self, pending: dict[Key, Aggregate], overflow: int,
                  overflow_first: float | None) -> None:
        with self._lock:
            current = self._pending
            for key, aggregate in pending.items():
                existing = current.get(key)
                if existing is not None:
                    existing.merge(aggregate)
                elif len(current) < self.settings.max_keys:
                    current[key] = aggregate
                else:
                    self._overflow += aggregate.count
                    self.overflow_total += aggregate.count
            self._overflow += overflow
            if overflow_first is not None and (
                    self._overflow_first is None or overflow_first < self._overflow_first):
                self._overflow_first = overflow_first

    def _forget_old_log_keys(self) -> None:
        cutoff = time.time() - self.settings.log_interval
        self._logged = {k: t for k, t in self._logged.items() if t >= cutoff}

    @property
    def pending_keys(self) -> int:
        return len(self._pending)

    @property
    def pending_overflow(self) -> int:
        return self._overflow

    def stop(self, *, flush: bool = True) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        if flush:
            self.flush()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread = None
        self._pending = {}
        self._overflow = 0
        self._overflow_first = None


def prune(engine: sa.Engine, retention_days: float) -> int:
    """Delete rows last seen before the retention period; returns how many."""
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    with engine.begin() as conn:
        result = conn.execute(sa.delete(_table).where(_table.c.last_seen < cutoff))
    return result.rowcount or 0


def _row(key: Key, aggregate: Aggregate) -> dict:
    bucket, rule_path, tenant, origin, reason, detail, mode = key
    return {
        "bucket_start": _dt(bucket),
        "rule_id": aggregate.rule_id,
        "rule_path": rule_path,
        "tenant": tenant,
        "origin": origin,
        "reason": reason,
        "detail": detail,
        "mode": mode,
        "count": aggregate.count,
        "first_seen": _dt(aggregate.first_seen),
        "last_seen": _dt(aggregate.last_seen),
        "path": aggregate.path,
        "method": aggregate.method,
        "preflight": aggregate.preflight,
        "request_method": aggregate.request_method,
        "request_headers": aggregate.request_headers,
        "user_agent": aggregate.user_agent,
        "referer": aggregate.referer,
    }


def _overflow_row(count: int, first: float, bucket_seconds: int) -> dict:
    now = time.time()
    return {
        "bucket_start": _dt(first - first % bucket_seconds),
        "rule_id": None, "rule_path": "", "tenant": "", "origin": "", "reason": OVERFLOW,
        "detail": "distinct keys over the in-memory bound", "mode": "enforce",
        "count": count, "first_seen": _dt(first), "last_seen": _dt(now), "path": "",
        "method": "", "preflight": False, "request_method": "", "request_headers": "",
        "user_agent": "", "referer": "",
    }


_KEY_COLUMNS = ["bucket_start", "rule_path", "tenant", "origin", "reason", "detail", "mode"]


_UPSERTS: dict[str, sa.Insert] = {}


def _upsert_statement(dialect: str) -> sa.Insert:
    """One compiled upsert per dialect, executed once per row (executemany): compiling a
    multi-row VALUES statement per flush cost more than writing the rows."""
    statement = _UPSERTS.get(dialect)
    if statement is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(_table)
        excluded = statement.excluded
        statement = _UPSERTS[dialect] = statement.on_conflict_do_update(
            index_elements=_KEY_COLUMNS,
            set_={
                "count": _table.c.count + excluded.count,
                "last_seen": sa.case((excluded.last_seen > _table.c.last_seen,
                                      excluded.last_seen), else_=_table.c.last_seen),
                "first_seen": sa.case((excluded.first_seen < _table.c.first_seen,
                                       excluded.first_seen), else_=_table.c.first_seen),
            },
        )
    return statement


def _upsert(conn: sa.Connection, rows: list[dict]) -> None:
    dialect = conn.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"the request log supports PostgreSQL and SQLite, not {dialect}")
    conn.execute(_upsert_statement(dialect), rows)


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _flush_all_at_exit() -> None:
    for recorder in list(_live_recorders):
        try:
            recorder.stop(flush=True)
        except Exception:  # the process is exiting; nothing else can be done
            pass


def _reset_after_fork() -> None:
    for recorder in list(_live_recorders):
        recorder._after_fork()


atexit.register(_flush_all_at_exit)
os.register_at_fork(after_in_child=_reset_after_fork)
