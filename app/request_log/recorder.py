"""The request log recorder: refusals aggregated in memory, written in batches.

A request only adds to an in-memory aggregate (a dict update under a lock). A background
flusher writes the aggregate every ``flush_interval`` seconds in one transaction, with upserts
that add to the counts of existing rows. Memory is bounded: at most ``max_keys`` distinct
keys wait between flushes; past that, events are counted in an overflow counter that is
written as a row of its own. Nothing here can fail or slow a request.

What a flush promises:

- Every string is made storable when it is recorded (control characters escaped as in log
  lines, cut to its column), so no client input can make the database refuse a row.
- Rows are written in key order, so flushers in several processes holding the same keys take
  their row locks in the same order and never deadlock.
- When the database is unreachable (a connectivity failure), the aggregate is kept (within the
  same bound) and written after recovery.
- When the database refuses the batch for its data, the rows are retried one by one; a row
  that fails alone is quarantined (counted, logged once with its key, dropped), so one bad
  row never holds back the others.
- A process that exits retries its last flush for ``exit_flush_seconds``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cors_control.decision import NO_RULE, Decision
from cors_control.text import printable
from cors_control.vocabulary import DRAFT, ENFORCE, REPORT_ONLY

from ..models import RequestLogEntry

if TYPE_CHECKING:
    from cors_control.extension import RequestView as Request

logger = logging.getLogger("cors_control")

OVERFLOW = "overflow"
OVERFLOW_DETAIL = "distinct keys over the in-memory bound"
_table = RequestLogEntry.__table__

# (bucket start, rule path, tenant, origin, reason, detail, mode)
Key = tuple[float, str, str, str, str, str, str]

# Quarantined rows logged one by one in a flush; past this, one summary line.
_QUARANTINE_LOG_LINES = 10


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
    # How long a process that stops keeps retrying its last flush.
    exit_flush_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class LogHealth:
    """What ``/healthz`` and ``/metrics`` say about the request log of this process."""

    pending_keys: int
    pending_events: int
    oldest_pending: float | None  # when the oldest event not yet written happened
    failing_since: float | None  # first failed flush of the current run of failures
    flush_failures: int
    quarantined_rows: int
    quarantined_events: int

    @property
    def degraded(self) -> bool:
        """Flushes are failing: refusals wait in memory, bounded, instead of being stored."""
        return self.failing_since is not None

    def oldest_pending_age(self, now: float) -> float:
        return 0.0 if self.oldest_pending is None else max(0.0, now - self.oldest_pending)


def storable(text: str, limit: int) -> str:
    """*text* as it is stored: printable ASCII (control characters escaped, as in log lines,
    which also keeps NUL out of PostgreSQL), cut to the column's *limit*."""
    return printable(text, limit)


_live_recorders: weakref.WeakSet[RequestLogRecorder] = weakref.WeakSet()


class RequestLogRecorder:
    """Collects refusals from the engine and writes them to the ``request_log`` table."""

    def __init__(self, engine: sa.Engine, settings: RecorderSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or RecorderSettings()
        self._pending: dict[Key, Aggregate] = {}
        self._in_flight: dict[Key, Aggregate] = {}  # taken by the flush under way
        self._overflow = 0
        self._overflow_first: float | None = None
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._logged: dict[tuple, float] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self.flush_failures = 0
        self.overflow_total = 0
        self.rows_written = 0
        self.quarantined_rows = 0
        self.quarantined_events = 0
        _live_recorders.add(self)

    # -- the request path ----------------------------------------------------------------------

    def record(self, decision: Decision, request: Request) -> None:
        """Engine listener: add the refusal the request got, and what each report-only rule
        watching its path would have refused, to the aggregate."""
        if decision.recordable and self._records(decision, request.path):
            self._add(decision, request)
        for finding in decision.shadows:
            self._add(finding, request)
        if decision.draft is not None:  # the live rule allowed it; its draft would not
            self._add(decision.draft, request, DRAFT)

    def _add(self, decision: Decision, request: Request, mode: str | None = None) -> None:
        now = time.time()
        key = self._key(decision, request.environ, now, mode)
        with self._lock:
            aggregate = self._pending.get(key)
            if aggregate is not None:
                aggregate.count += 1
                aggregate.last_seen = now
                return
            if len(self._pending) >= self.settings.max_keys:
                self._count_overflow(1, now)
                return
            if self._thread is None:
                self.start()
            self._pending[key] = _sample(decision, request, now)
            should_log = self._should_log(key, now)
        if should_log:
            _log_refusal(key, request)

    def _records(self, decision: Decision, path: str) -> bool:
        """A request no rule matched is recorded only under the API prefixes."""
        return (decision.rule is not None or decision.reason != NO_RULE
                or path.startswith(self.settings.api_prefixes))

    def _key(self, decision: Decision, environ: dict, now: float,
             mode: str | None = None) -> Key:
        """The aggregate's key, every client-given part made storable. On the request path:
        printable() is called directly, and only on non-empty values. *mode* is given for a
        draft's finding; otherwise it is the deciding rule's."""
        rule = decision.rule
        if rule is None:
            rule_path, mode = "", ENFORCE
        else:  # the rule's path came from the database: it is storable as it is
            rule_path = rule.path
            if mode is None:
                mode = REPORT_ONLY if decision.report_only else ENFORCE
        origin = environ.get("HTTP_ORIGIN")  # read directly: absent headers cost nothing
        tenant, detail = decision.tenant, decision.detail
        return (now - now % self.settings.bucket_seconds, rule_path,
                printable(tenant, 100) if tenant else "",
                printable(origin, 300) if origin else "",
                decision.reason,
                printable(detail, 200) if detail else "",
                mode)

    def _count_overflow(self, count: int, first: float) -> None:
        """Under the lock: events past the key bound go to the overflow counter."""
        self._overflow += count
        self.overflow_total += count
        if self._overflow_first is None or first < self._overflow_first:
            self._overflow_first = first

    def _should_log(self, key: Key, now: float) -> bool:
        """Under the lock: at most one log line per key (bucket aside) per log interval."""
        if not logger.isEnabledFor(logging.INFO) or len(self._logged) >= self.settings.max_keys:
            return False
        if now - self._logged.get(key[1:], 0.0) < self.settings.log_interval:
            return False
        self._logged[key[1:]] = now
        return True

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
        """Write what is pending; returns the number of rows upserted.

        One transaction for the batch. A connectivity failure puts everything back (within
        the key bound) for the next flush; a refusal of the data retries row by row.
        """
        with self._flush_lock:
            batch = self._take()
            if not batch:
                return 0
            try:
                written = self._write(batch)
            finally:
                with self._lock:
                    self._in_flight = {}
            self.rows_written += written
            return written

    def _take(self) -> dict[Key, Aggregate]:
        """Everything pending (the overflow counter as its row), kept visible as in flight."""
        with self._lock:
            batch, self._pending = self._pending, {}
            if self._overflow:
                key, aggregate = _overflow_entry(self._overflow, self._overflow_first,
                                                 self.settings.bucket_seconds)
                if key in batch:
                    batch[key].merge(aggregate)
                else:
                    batch[key] = aggregate
                self._overflow, self._overflow_first = 0, None
            self._in_flight = batch
            self._forget_old_log_keys()
        return batch

    def _write(self, batch: dict[Key, Aggregate]) -> int:
        # Key order: every flusher locks the rows it shares with another in the same order.
        entries = sorted(batch.items(), key=_entry_key)
        try:
            with self.engine.begin() as conn:
                _upsert(conn, [_row(key, aggregate) for key, aggregate in entries])
        except Exception as exc:
            if _is_connectivity_failure(exc):
                self._put_back(entries)
                self._note_failure(exc, len(entries))
                return 0
            return self._write_one_by_one(entries, exc)
        self._note_success()
        return len(entries)

    def _write_one_by_one(self, entries: list[tuple[Key, Aggregate]],
                          batch_error: BaseException) -> int:
        """The batch was refused for its data: find the rows at fault, write the others."""
        self.flush_failures += 1
        logger.warning("request log flush refused (%s); writing its %d rows one by one",
                       _describe(batch_error), len(entries))
        written = 0
        quarantined: list[tuple[Key, Aggregate, BaseException]] = []
        try:
            with self.engine.connect() as conn:
                for index, (key, aggregate) in enumerate(entries):
                    try:
                        with conn.begin():
                            _upsert(conn, [_row(key, aggregate)])
                    except Exception as exc:
                        if _is_connectivity_failure(exc):
                            self._put_back(entries[index:])
                            self._note_failure(exc, len(entries) - index)
                            return written
                        quarantined.append((key, aggregate, exc))
                        continue
                    written += 1
        except Exception as exc:  # connecting failed: nothing of the rest was tried
            self._put_back(entries[written + len(quarantined):])
            self._note_failure(exc, len(entries) - written - len(quarantined))
            return written
        finally:
            self._quarantine(quarantined)
        self._note_success()
        return written

    def _quarantine(self, rows: list[tuple[Key, Aggregate, BaseException]]) -> None:
        """Drop rows the database refuses on their own: counted, and each logged once."""
        for index, (key, aggregate, exc) in enumerate(rows):
            self.quarantined_rows += 1
            self.quarantined_events += aggregate.count
            if index < _QUARANTINE_LOG_LINES:
                logger.error("request log: quarantined a row the database refuses (%s); "
                             "%d events dropped; key=%s", _describe(exc), aggregate.count,
                             _describe_key(key))
        if len(rows) > _QUARANTINE_LOG_LINES:
            logger.error("request log: %d more rows quarantined in the same flush",
                         len(rows) - _QUARANTINE_LOG_LINES)

    def _note_failure(self, exc: BaseException, kept: int) -> None:
        self.flush_failures += 1
        if self._failing_since is None:
            self._failing_since = time.time()
            logger.error("request log flush failed; keeping %d entries in memory until the "
                         "database is back: %s", kept, _describe(exc))

    def _note_success(self) -> None:
        if self._failing_since is not None:
            logger.warning("request log flush succeeded again")
            self._failing_since = None

    def _put_back(self, entries: Iterable[tuple[Key, Aggregate]]) -> None:
        with self._lock:
            current = self._pending
            for key, aggregate in entries:
                existing = current.get(key)
                if existing is not None:
                    existing.merge(aggregate)
                elif len(current) < self.settings.max_keys:
                    current[key] = aggregate
                elif key[4] == OVERFLOW:  # already counted in overflow_total
                    self._overflow += aggregate.count
                    if self._overflow_first is None or \
                            aggregate.first_seen < self._overflow_first:
                        self._overflow_first = aggregate.first_seen
                else:
                    self._count_overflow(aggregate.count, aggregate.first_seen)

    def _forget_old_log_keys(self) -> None:
        cutoff = time.time() - self.settings.log_interval
        self._logged = {k: t for k, t in self._logged.items() if t >= cutoff}

    @property
    def pending_keys(self) -> int:
        return len(self._pending)

    @property
    def pending_overflow(self) -> int:
        return self._overflow

    def health(self) -> LogHealth:
        """Pending work (a flush under way included) and the failures so far."""
        with self._lock:
            waiting = {**self._in_flight, **self._pending}
            events = sum(a.count for a in waiting.values()) + self._overflow
            firsts = [a.first_seen for a in waiting.values()]
            if self._overflow_first is not None:
                firsts.append(self._overflow_first)
        return LogHealth(
            pending_keys=len(waiting),
            pending_events=events,
            oldest_pending=min(firsts, default=None),
            failing_since=self._failing_since,
            flush_failures=self.flush_failures,
            quarantined_rows=self.quarantined_rows,
            quarantined_events=self.quarantined_events,
        )

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, *, flush: bool = True) -> None:
        """Stop the flusher; with *flush*, write what is pending (see :meth:`flush_before_exit`).

        A stopped recorder is done: the exit flush of the process passes it by."""
        self._stopped.set()
        _live_recorders.discard(self)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        if flush:
            self.flush_before_exit()

    def flush_before_exit(self) -> bool:
        """Flush, retrying failures for at most ``exit_flush_seconds`` (the database may be
        busy with other workers' exit flushes, or restarting); returns whether nothing is
        left. What is left when the time is up is logged, with its count of events."""
        deadline = time.monotonic() + self.settings.exit_flush_seconds
        delay = 0.05
        while True:
            self.flush()
            if not self._has_pending():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)
        health = self.health()
        logger.error("request log: %d events in %d keys could not be written before the "
                     "process stopped (gave up after %.1f s)", health.pending_events,
                     health.pending_keys, self.settings.exit_flush_seconds)
        return False

    def _has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending) or self._overflow > 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread = None
        self._pending = {}
        self._in_flight = {}
        self._overflow = 0
        self._overflow_first = None
        self._failing_since = None


def _sample(decision: Decision, request: Request, now: float) -> Aggregate:
    """The first request of a key, kept as its sample; every string storable."""
    environ = request.environ
    return Aggregate(
        rule_id=None if decision.rule is None else decision.rule.rule_id,
        count=1,
        first_seen=now,
        last_seen=now,
        path=storable(request.path, 500),
        method=storable(request.method, 20),
        preflight=decision.preflight,
        request_method=storable(environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD") or "", 40),
        request_headers=storable(environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS") or "", 500),
        user_agent=storable(environ.get("HTTP_USER_AGENT") or "", 300),
        referer=storable(environ.get("HTTP_REFERER") or "", 500),
    )


def _log_refusal(key: Key, request: Request) -> None:
    """One INFO line per new key; the key's values are already escaped."""
    _bucket, rule_path, _tenant, origin, reason, detail, mode = key
    logger.info(
        "CORS %s %s: origin=%s rule=%s method=%s path=%s%s",
        "would refuse (report-only)" if mode == REPORT_ONLY
        else "draft would refuse (the live rule allowed it)" if mode == DRAFT else "refused",
        reason, origin, printable(rule_path) or "(none)",
        printable(request.method), printable(request.path, 200),
        f" detail={detail}" if detail else "",
    )


def _entry_key(entry: tuple[Key, Aggregate]) -> Key:
    return entry[0]


def _is_connectivity_failure(exc: BaseException) -> bool:
    """The database could not be reached or could not take the write now (down, restarting,
    locked, a deadlock victim): worth retrying the same rows later. Anything else (DataError,
    IntegrityError, other DBAPI errors, errors binding a value) is about the rows."""
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError,
                            sa.exc.DisconnectionError, sa.exc.TimeoutError))


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return printable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _describe_key(key: Key) -> str:
    bucket, rule_path, tenant, origin, reason, detail, mode = key
    return printable(f"bucket={_dt(bucket).isoformat()} rule={rule_path!r} tenant={tenant!r} "
                     f"origin={origin!r} reason={reason!r} detail={detail!r} mode={mode!r}",
                     limit=2000)


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


def _overflow_entry(count: int, first: float | None,
                    bucket_seconds: int) -> tuple[Key, Aggregate]:
    """The overflow counter as a row of its own, in the bucket of its first event."""
    now = time.time()
    first = now if first is None else first
    key = (first - first % bucket_seconds, "", "", "", OVERFLOW, OVERFLOW_DETAIL, "enforce")
    return key, Aggregate(rule_id=None, count=count, first_seen=first, last_seen=now, path="",
                          method="", preflight=False, request_method="", request_headers="",
                          user_agent="", referer="")


KEY_COLUMNS = ["bucket_start", "rule_path", "tenant", "origin", "reason", "detail", "mode"]


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
            index_elements=KEY_COLUMNS,
            set_={
                "count": _table.c.count + excluded.count,
                "last_seen": sa.case((excluded.last_seen > _table.c.last_seen,
                                      excluded.last_seen), else_=_table.c.last_seen),
                "first_seen": sa.case((excluded.first_seen < _table.c.first_seen,
                                       excluded.first_seen), else_=_table.c.first_seen),
            },
        )
    return statement


def upsert_rows(conn: sa.Connection, rows: list[dict]) -> None:
    """Merge *rows* (columns of ``request_log``, every string storable) into the table: a
    row whose key exists adds its count to it and widens its first and last seen. Give them
    in key order (see :func:`_write`): concurrent writers then never deadlock."""
    _upsert(conn, rows)


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
        except Exception:  # the process is exiting: say what was lost, then let it exit
            logger.exception("request log: the exit flush failed")


def _reset_after_fork() -> None:
    for recorder in list(_live_recorders):
        recorder._after_fork()


atexit.register(_flush_all_at_exit)
os.register_at_fork(after_in_child=_reset_after_fork)
