"""The dashboard's large data set: 10,000 rules, 100,000 origins, 1,000,000 log rows.

Built into a SQLite file whose schema the migrations made, in one transaction per table, by
multi-row inserts (the request log through the DB-API directly: a million rows through the
ORM would take minutes). Values are stored exactly as the app stores them: timestamps with
SQLAlchemy's own SQLite format, JSON lists, canonical origins. The spread is meant to look
like a real installation: a few rules attract most refusals, a few origins most of those,
more refusals in the day than at night, every row within the retention period.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from app.models import AllowedOrigin, AuditEntry, PolicyState, RequestLogEntry, Rule
from app.services import origin_count
from cors_control.database.tables import refusal_group_key

from . import database

DEFAULT_METHODS = ["GET", "HEAD", "POST", "OPTIONS", "PUT", "PATCH", "DELETE"]
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-admin-password"
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "python-requests/2.31.0",
    "",
)
# (reason, share of rows, possible details)
REASONS = (
    ("origin-not-allowed", 0.80, ("",)),
    ("method-not-allowed", 0.05, ("PUT", "DELETE", "PATCH")),
    ("header-not-allowed", 0.05, ("x-api-key", "x-requested-with", "authorization")),
    ("credentials-not-allowed", 0.04, ("",)),
    ("no-rule", 0.04, ("",)),
    ("private-network-not-allowed", 0.02, ("",)),
)
NO_RULE = "no-rule"


@dataclass(frozen=True, slots=True)
class Size:
    rules: int
    origins: int  # in all, the big rule's included
    big_rule_origins: int
    log_rows: int
    noisy_rules: int  # rules that ever refuse anything
    origin_pool: int  # distinct refused origins
    days: int
    audit_changes: int  # small changes after the initial import
    big_rule_changes: int  # origins added to the big rule one by one, the latest changes


FULL = Size(rules=10_000, origins=100_000, big_rule_origins=5_000, log_rows=1_000_000,
            noisy_rules=1_000, origin_pool=200_000, days=30, audit_changes=5_000,
            big_rule_changes=30)
SMOKE = Size(rules=300, origins=3_000, big_rule_origins=500, log_rows=20_000, noisy_rules=50,
             origin_pool=5_000, days=30, audit_changes=200, big_rule_changes=10)


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: int
    path: str
    mode: str
    origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Built:
    url: str
    big_rule_id: int
    big_rule_path: str
    seconds: dict[str, float]


def big_rule_index(size: Size) -> int:
    return size.rules * 43 // 100


def rule_path(index: int) -> str:
    return f"/api/svc{index}/*"


def build(path: Path, instance: Path, size: Size, *, now: datetime | None = None) -> Built:
    """Create the database at *path* and fill it; returns where the big rule is."""
    now = now or datetime.now(UTC)
    rng = random.Random(1_000_000)
    url = database.sqlite_url(path)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    database.migrate(url, instance)
    seconds["migrations"] = time.perf_counter() - started
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA cache_size = -262144")  # 256 MB for the build
            step = time.perf_counter()
            rules = _insert_rules(conn, size, rng, now)
            origin_count.recount(conn)  # rows written here, not by the app's writes
            seconds["rules and origins"] = time.perf_counter() - step
            step = time.perf_counter()
            _insert_audit(conn, size, rng, rules, now)
            seconds["audit trail"] = time.perf_counter() - step
            conn.execute(sa.update(PolicyState.__table__).values(
                version=1 + size.audit_changes + size.big_rule_changes, changed_at=now))
        step = time.perf_counter()
        with engine.begin() as conn:
            _insert_log(conn, size, rng, rules, now)
        seconds["request log"] = time.perf_counter() - step
    finally:
        engine.dispose()
    step = time.perf_counter()
    _create_admin(url, instance)
    seconds["admin user"] = time.perf_counter() - step
    big = rules[big_rule_index(size)]
    return Built(url, big.id, big.path, seconds)


def filled(url: str, size: Size) -> bool:
    """Whether the database at *url* already holds a copy of the data set of *size*."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(RequestLogEntry.__tablename__):
                return False
            rows = conn.scalar(sa.select(sa.func.count()).select_from(RequestLogEntry))
    finally:
        engine.dispose()
    return rows == size.log_rows


def found(url: str, size: Size) -> Built:
    """The data set already copied to *url* (see :func:`copy_to`)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            big = rule_path(big_rule_index(size))
            big_id = conn.scalar(sa.select(Rule.id).where(Rule.path == big))
    finally:
        engine.dispose()
    return Built(url, int(big_id), big, {"reused copy": 0.0})


def copy_to(url: str, built: Built, instance: Path, batch: int = 20_000) -> Built:
    """Copy the data set *built* into the database at *url*, whose schema the migrations
    make; every table of the schema is emptied first. Ids are kept, sequences moved past
    them, statistics gathered (as autovacuum would after a real installation's writes)."""
    started = time.perf_counter()
    database.migrate(url, instance)
    from app.extensions import db

    tables = [table for table in db.Model.metadata.sorted_tables]
    source, target = sa.create_engine(built.url), sa.create_engine(url)
    try:
        with target.begin() as conn:
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables)
                                 + " RESTART IDENTITY CASCADE")
        for table in tables:
            with source.connect() as reading, target.begin() as writing:
                result = reading.execute(sa.select(table)).yield_per(batch)
                for part in result.partitions():
                    writing.execute(sa.insert(table), [dict(row._mapping) for row in part])
                serial = table.autoincrement_column  # an integer id (not a text one)
                if serial is not None:
                    writing.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', "
                        f"'{serial.name}'), coalesce((SELECT max(\"{serial.name}\") "
                        f"FROM \"{table.name}\"), 0) + 1, false)")
        with target.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE")
    finally:
        source.dispose()
        target.dispose()
    seconds = {**built.seconds, "copy to PostgreSQL": time.perf_counter() - started}
    return Built(url, built.big_rule_id, built.big_rule_path, seconds)


# -- rules and their origins -----------------------------------------------------------------


def _insert_rules(conn: sa.Connection, size: Size, rng: random.Random,
                  now: datetime) -> list[RuleRow]:
    table = Rule.__table__
    created = now - timedelta(days=size.days + 5)
    rows = []
    for i in range(size.rules):
        mode = rng.choices(("enforce", "report-only", "off"), (90, 7, 3))[0]
        credentials = rng.random() < 0.2
        rows.append({
            "path": rule_path(i), "methods": DEFAULT_METHODS, "allow_headers": ["*"],
            "expose_headers": ["X-Request-Id"] if i % 3 == 0 else [],
            "supports_credentials": credentials, "max_age": 600 if i % 2 else None,
            "allow_private_network": False, "mode": mode,
            "description": f"service {i}: {rng.choice(('orders', 'billing', 'search', 'users'))}"
                           f" API for {rng.choice(('web', 'mobile', 'partners'))}",
            "tenant_id": None, "tenant_source": "none", "tenant_key": "",
            "unknown_tenant": "refuse", "created_at": created, "updated_at": created,
            "updated_by": "import@example.com", "version": 1,
        })
    conn.execute(sa.insert(table), rows)
    ids = dict(conn.execute(sa.select(table.c.path, table.c.id)).all())

    origins_of = _spread_origins(size, rng)
    origin_rows = []
    for index, values in enumerate(origins_of):
        rule_id = ids[rule_path(index)]
        for value in values:
            expires = None
            if rng.random() < 0.05:
                expires = now + timedelta(days=rng.randint(-20, 90))
            origin_rows.append({
                "rule_id": rule_id, "value": value,
                "kind": "subdomain-wildcard" if "://*." in value else "exact",
                "note": "", "added_by": "import@example.com", "added_at": created,
                "expires_at": expires, "tenant_id": None,
            })
    for start in range(0, len(origin_rows), 20_000):
        conn.execute(sa.insert(AllowedOrigin.__table__), origin_rows[start:start + 20_000])
    return [RuleRow(ids[row["path"]], row["path"], row["mode"], tuple(origins_of[i]))
            for i, row in enumerate(rows)]


def _spread_origins(size: Size, rng: random.Random) -> list[list[str]]:
    """The big rule's origins, and the rest spread at random over the other rules."""
    big = big_rule_index(size)
    per_rule: list[list[str]] = [[] for _ in range(size.rules)]
    per_rule[big] = [f"https://app{j}.partner{j % 700}.example" for j in
                     range(size.big_rule_origins)]
    others = [i for i in range(size.rules) if i != big]
    for j in range(size.origins - size.big_rule_origins):
        index = rng.choice(others)
        if j % 50 == 0:
            value = f"https://*.tenant{j}.example.org"
        else:
            value = f"https://www{j}.customer{j % 997}.example.com"
        per_rule[index].append(value)
    return per_rule


# -- the audit trail -------------------------------------------------------------------------


def _insert_audit(conn: sa.Connection, size: Size, rng: random.Random, rules: list[RuleRow],
                  now: datetime) -> None:
    """The import that created every rule, small changes since, and, most recent, origins
    added one by one to the big rule (each entry holds the rule's whole state twice, as
    ``add_origin`` records it)."""
    table = AuditEntry.__table__
    start = now - timedelta(days=size.days + 5)
    version = 1
    entries = [{
        "at": start, "actor": "import@example.com", "channel": "cli", "action": "policy.import",
        "rule_id": None, "rule_path": "", "tenant_id": None, "policy_version": version,
        "summary": f"imported policy: {len(rules)} added, 0 changed, 0 removed",
        "before": {"rules": {}},
        "after": {"rules": {rule.path: _state(rule, rule.origins) for rule in rules}},
    }]
    small = [rule for rule in rules if len(rule.origins) < 100]
    span = (size.days * 86400) - 3600
    moments = sorted(rng.uniform(0, span) for _ in range(size.audit_changes))
    for offset in moments:
        rule = rng.choice(small)
        version += 1
        added = f"https://new{version}.example.net"
        entries.append(_origin_added(rule, added, start + timedelta(days=5, seconds=offset),
                                     version))
    big = rules[big_rule_index(size)]
    first_new = len(big.origins) - size.big_rule_changes
    for k in range(size.big_rule_changes):
        version += 1
        before = RuleRow(big.id, big.path, big.mode, big.origins[:first_new + k])
        at = now - timedelta(minutes=10 * (size.big_rule_changes - k))
        entries.append(_origin_added(before, big.origins[first_new + k], at, version))
    for first in range(0, len(entries), 2_000):
        conn.execute(sa.insert(table), entries[first:first + 2_000])


def _origin_added(rule: RuleRow, value: str, at: datetime, version: int) -> dict:
    return {
        "at": at, "actor": "ops@example.com", "channel": "dashboard", "action": "origin.add",
        "rule_id": rule.id, "rule_path": rule.path, "tenant_id": None, "policy_version": version,
        "summary": f"allowed {value} on {rule.path}",
        "before": _state(rule, rule.origins), "after": _state(rule, (*rule.origins, value)),
    }


def _state(rule: RuleRow, origins: Sequence[str]) -> dict:
    """A rule as ``rule_to_dict`` records it."""
    return {"path": rule.path, "origins": sorted(origins), "methods": DEFAULT_METHODS,
            "allow_headers": ["*"], "expose_headers": [], "supports_credentials": False,
            "max_age": None, "allow_private_network": False, "mode": rule.mode,
            "description": ""}


# -- the request log -------------------------------------------------------------------------


_LOG_COLUMNS = ("bucket_start", "rule_id", "rule_path", "tenant", "origin", "reason", "detail",
                "mode", "count", "first_seen", "last_seen", "path", "method", "preflight",
                "request_method", "request_headers", "user_agent", "referer", "group_key")


def _insert_log(conn: sa.Connection, size: Size, rng: random.Random, rules: list[RuleRow],
                now: datetime) -> None:
    table = RequestLogEntry.__table__.name
    statement = (f"INSERT INTO {table} ({', '.join(_LOG_COLUMNS)}) "
                 f"VALUES ({', '.join('?' for _ in _LOG_COLUMNS)})")
    batch: list[tuple] = []
    for row in _log_rows(size, rng, rules, now):
        batch.append(row)
        if len(batch) == 50_000:
            conn.exec_driver_sql(statement, batch)
            batch = []
    if batch:
        conn.exec_driver_sql(statement, batch)


def _log_rows(size: Size, rng: random.Random, rules: list[RuleRow],
              now: datetime) -> Iterator[tuple]:
    """Rows bucket by bucket, oldest first (as the recorder would have written them), each
    key (bucket, rule, origin, reason, detail, mode) once."""
    stamp = _timestamp_format()
    hours = size.days * 24
    current = now.replace(minute=0, second=0, microsecond=0)
    buckets = [current - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    per_bucket = _spread(size.log_rows, [_daily_rhythm(b) for b in buckets])

    live = [rule for rule in rules if rule.mode != "off"]
    noisy = rng.sample(live, min(size.noisy_rules, len(live)))
    rule_weights = _cumulative([1 / (k + 1) ** 0.8 for k in range(len(noisy))])
    pool = [f"https://{_name(rng)}.{rng.choice(('attacker', 'scanner', 'partner', 'local'))}"
            f"{k % 300}.example" for k in range(size.origin_pool)]
    origin_weights = _cumulative([1 / (k + 1) ** 0.6 for k in range(len(pool))])
    reason_weights = _cumulative([share for _, share, _ in REASONS])

    for bucket, wanted in zip(buckets, per_bucket, strict=True):
        start = bucket.timestamp()
        span = max(1.0, min(3600.0, now.timestamp() - start))
        bucket_text = stamp(bucket)
        seen: set[tuple] = set()
        while len(seen) < wanted:
            need = wanted - len(seen)
            picked_rules = rng.choices(noisy, cum_weights=rule_weights, k=need)
            picked_origins = rng.choices(pool, cum_weights=origin_weights, k=need)
            picked_reasons = rng.choices(REASONS, cum_weights=reason_weights, k=need)
            for rule, origin, (reason, _, details) in zip(picked_rules, picked_origins,
                                                          picked_reasons, strict=True):
                detail = details[0] if len(details) == 1 else rng.choice(details)
                governed = reason != NO_RULE
                path = rule.path if governed else ""
                mode = rule.mode if governed else "enforce"
                key = (path, origin, reason, detail, mode)
                if key in seen:
                    continue
                seen.add(key)
                first = start + rng.random() * span
                last = first + rng.random() * (start + span - first)
                preflight = reason != "credentials-not-allowed" and rng.random() < 0.4
                sample_path = (rule.path[:-1] + "items" if governed
                               else f"/api/legacy/{rng.randint(1, 40)}")
                yield (
                    bucket_text, rule.id if governed else None, path, "", origin, reason,
                    detail, mode, 1 + int(rng.expovariate(0.1)), stamp(_utc(first)),
                    stamp(_utc(last)), sample_path, "OPTIONS" if preflight else "GET",
                    int(preflight), rng.choice(("PUT", "POST", "DELETE")) if preflight else "",
                    "content-type" if preflight else "", rng.choice(USER_AGENTS),
                    origin + "/", refusal_group_key(origin, path, reason, mode),
                )


def _timestamp_format() -> Callable[[datetime], str]:
    """SQLAlchemy's own conversion of a datetime for a SQLite DateTime column."""
    dialect = sqlite.dialect()
    return sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _daily_rhythm(hour: datetime) -> float:
    """Twice as many refusals in the (UTC) afternoon as at night."""
    return 1.5 + 0.5 * math.sin((hour.hour - 9) / 24 * 2 * math.pi)


def _spread(total: int, weights: list[float]) -> list[int]:
    """*total* split in proportion to *weights*, largest remainders rounded up."""
    scale = total / sum(weights)
    exact = [w * scale for w in weights]
    counts = [int(x) for x in exact]
    short = total - sum(counts)
    for index in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[:short]:
        counts[index] += 1
    return counts


def _cumulative(weights: list[float]) -> list[float]:
    total = 0.0
    out = []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def _name(rng: random.Random) -> str:
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=8))


# -- the admin -------------------------------------------------------------------------------


def _create_admin(url: str, instance: Path) -> None:
    from app.services.users import create_user

    with database.bench_app(url, instance) as app, app.app_context():
        create_user(ADMIN_EMAIL, ADMIN_PASSWORD, role="admin")
