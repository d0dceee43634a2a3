"""Section ``dashboard``: server time of the dashboard's pages at a large installation's size.

A SQLite database built by the migrations and filled with 10,000 rules, 100,000 origins (one
rule with 5,000), 1,000,000 request log rows over 30 days and an audit trail
(:mod:`bench.dashboard_data`), served by ``create_app`` to a signed-in admin through Flask's
test client. Each page is requested in every round, in a shuffled order; its figure is the
median over rounds of the wall time around ``client.get`` (and of the CPU time of the bench
thread). One more request per page, untimed, records the SQL statements it ran; each is
replayed alone with every row fetched, which gives the database's share of the page. For a
page over the target, the slowest statements' query plans (``EXPLAIN QUERY PLAN``) and a
profile of one more request show where the time goes.

With ``BENCH_DASHBOARD_URL`` naming a PostgreSQL database of its own, the same data set is
copied there (its tables emptied first) and the pages are measured on PostgreSQL.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import random
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, url_for
from flask.testing import FlaskClient

from app.config import ROOT
from app.extensions import db

from . import dashboard_data, database
from .harness import Budget, clock
from .report import count, table, verdict

TARGET_MS = 100.0
ROUNDS = 15
WARMUP = 2
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@dataclass(frozen=True, slots=True)
class Page:
    label: str
    endpoint: str
    args: dict[str, Any] = field(default_factory=dict)


BASELINE = "rules list"  # a trivial page: the others are also given as multiples of it


def pages(big_rule_id: int, size: dashboard_data.Size) -> list[Page]:
    return [
        Page(BASELINE, "admin.rules"),
        Page("rules list, search svc99", "admin.rules", {"q": "svc99"}),
        Page(f"rule page, {count(size.big_rule_origins)} origins", "admin.rule",
             {"rule_id": big_rule_id}),
        Page("request log, 24h, grouped by origin", "admin.request_log"),
        Page("request log, hourly rows (last 24h)", "admin.request_log", {"group": "none"}),
        Page("request log, 7d, grouped by rule", "admin.request_log",
             {"since": "7d", "group": "rule"}),
        Page("request log, 7d, grouped by reason", "admin.request_log",
             {"since": "7d", "group": "reason"}),
        Page("request log, 7d, origin-not-allowed, by origin", "admin.request_log",
             {"since": "7d", "reason": "origin-not-allowed"}),
        Page("overview", "admin.overview"),
        Page("audit trail", "admin.audit"),
    ]


@dataclass(slots=True)
class Statement:
    sql: str
    parameters: Any
    seconds: float = 0.0  # replayed alone, every row fetched


@dataclass(slots=True)
class StatementLog:
    """The statements the app's engine runs while :attr:`on`."""

    on: bool = False
    statements: list[Statement] = field(default_factory=list)

    def attach(self, engine: sa.Engine) -> None:
        sa.event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on:
            self.statements.append(Statement(statement, parameters))


def run(budget: Budget) -> dict[str, object]:
    """Build the data set in SQLite and measure; with ``BENCH_DASHBOARD_URL`` set to a
    PostgreSQL database, measure there instead, after copying the data set into it (or on
    the copy already there, if its request log is filled: the copy takes minutes)."""
    size = dashboard_data.SMOKE if budget.smoke else dashboard_data.FULL
    rounds = 2 if budget.smoke else ROUNDS
    target = os.environ.get("BENCH_DASHBOARD_URL", "")
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        if target and dashboard_data.filled(target, size):
            built = dashboard_data.found(target, size)
        else:
            built = dashboard_data.build(directory / "dashboard.db", directory, size)
            if target:
                built = dashboard_data.copy_to(target, built, directory)
        build_seconds = time.perf_counter() - started
        with database.bench_app(built.url, directory) as app:
            results = _measure(app, pages(built.big_rule_id, size), rounds)
            results["overview_service"] = _measure_overview_service(app, rounds)
    results["database"] = sa.make_url(built.url).get_backend_name()
    results["build_seconds"] = {**built.seconds, "total": build_seconds}
    results["size"] = {"rules": size.rules, "origins": size.origins,
                       "big_rule_origins": size.big_rule_origins, "log_rows": size.log_rows,
                       "audit_entries": 1 + size.audit_changes + size.big_rule_changes}
    _print_report(results, size, rounds)
    return results


def _measure(app: Flask, wanted: list[Page], rounds: int) -> dict[str, Any]:
    statements = StatementLog()
    with app.app_context():
        statements.attach(db.engine)
    with app.test_request_context():
        targets = [(page, url_for(page.endpoint, **page.args)) for page in wanted]
    client = _signed_in(app)
    for page, url in targets:
        for _ in range(WARMUP):
            _get(client, url, page)
    wall: dict[str, list[float]] = {page.label: [] for page, _ in targets}
    cpu: dict[str, list[float]] = {page.label: [] for page, _ in targets}
    order = list(targets)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for page, url in order:
            started, cpu_started = time.perf_counter(), clock()
            _get(client, url, page)
            cpu[page.label].append(clock() - cpu_started)
            wall[page.label].append(time.perf_counter() - started)

    results: dict[str, Any] = {"pages": {}}
    with app.app_context():
        for page, url in targets:
            statements.statements.clear()
            statements.on = True
            size = _get(client, url, page)
            statements.on = False
            ran = _replayed(statements.statements)
            median_wall = statistics.median(wall[page.label]) * 1e3
            meets = median_wall < TARGET_MS
            slowest = sorted(ran, key=lambda s: s.seconds, reverse=True)[:3]
            results["pages"][page.label] = {
                "url": url,
                "wall_ms": median_wall,
                "cpu_ms": statistics.median(cpu[page.label]) * 1e3,
                "wall_ms_rounds": [w * 1e3 for w in wall[page.label]],
                "bytes": size,
                "queries": len(ran),
                "database_ms": sum(s.seconds for s in ran) * 1e3,
                "slowest": [{"ms": s.seconds * 1e3, "sql": _one_line(s.sql),
                             "plan": [] if meets else _plan(s)} for s in slowest],
                "hot_spots": {} if meets else _hot_spots(client, url, page),
                "meets": meets,
            }
    return results


def _measure_overview_service(app: Flask, rounds: int) -> dict[str, float]:
    """``load_overview`` alone (the overview page's figures, without the request and the
    rendering), as the admin sees them: median wall and CPU time over *rounds* calls."""
    from app.services.overview import load_overview

    wall: list[float] = []
    cpu: list[float] = []
    with app.app_context():
        for round_ in range(WARMUP + rounds):
            started, cpu_started = time.perf_counter(), clock()
            load_overview()
            if round_ >= WARMUP:
                cpu.append(clock() - cpu_started)
                wall.append(time.perf_counter() - started)
            db.session.remove()
    return {"wall_ms": statistics.median(wall) * 1e3, "cpu_ms": statistics.median(cpu) * 1e3}


def _replayed(statements: list[Statement]) -> list[Statement]:
    """Each read statement run again alone, timed until its last row is fetched (SQLite
    computes rows as they are fetched): the database's share of the page."""
    with db.engine.connect() as conn:
        for statement in statements:
            if not statement.sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            started = time.perf_counter()
            conn.exec_driver_sql(statement.sql, statement.parameters).fetchall()
            statement.seconds = time.perf_counter() - started
    return statements


def _hot_spots(client: FlaskClient, url: str, page: Page, limit: int = 5) -> dict[str, Any]:
    """Where a profiled request spent its time, as cumulative shares of the request
    (profiling inflates every figure): rendering the templates, the project's heaviest
    functions, and the innermost template that still takes a quarter of the request."""
    profile = cProfile.Profile()
    profile.enable()
    _get(client, url, page)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in stats.values())
    render = functions = 0.0
    found: list[tuple[float, str, int]] = []
    templates: list[tuple[float, str]] = []
    for (filename, line, function), (_, calls, _, cumulative, _) in stats.items():
        share = cumulative / total
        if filename == str(ROOT / "app" / "admin" / "rendering.py") and function == "render":
            render = share
        elif filename.startswith(str(ROOT / "templates")):
            templates.append((share, str(Path(filename).relative_to(ROOT))))
        elif filename.startswith(str(ROOT / "app")) and share < 0.9:
            found.append((share, f"{Path(filename).relative_to(ROOT)}:{line} {function}", calls))
    found.sort(reverse=True)
    heavy = [t for t in templates if t[0] >= 0.25]
    functions = [{"where": where, "share": share, "calls": calls}
                 for share, where, calls in found[:limit]]
    return {"render_share": render, "functions": functions,
            "innermost_template": min(heavy)[1] if heavy else None,
            "innermost_template_share": min(heavy)[0] if heavy else 0.0}


def _signed_in(app: Flask) -> FlaskClient:
    """A test client signed in as the admin, through the login form with its CSRF token."""
    client = app.test_client()
    with app.test_request_context():
        login = url_for("auth.login")
    token = _CSRF_META.search(client.get(login).get_data(as_text=True))
    if token is None:
        raise RuntimeError("dashboard: the login page carries no CSRF token")
    response = client.post(login, data={"email": dashboard_data.ADMIN_EMAIL,
                                        "password": dashboard_data.ADMIN_PASSWORD,
                                        "csrf_token": token.group(1)})
    if response.status_code != 302:
        raise RuntimeError(f"dashboard: signing in answered {response.status_code}, not 302")
    return client


def _get(client: FlaskClient, url: str, page: Page) -> int:
    response = client.get(url)
    body = response.get_data()
    if response.status_code != 200:
        raise RuntimeError(f"dashboard: {page.label} ({url}) answered {response.status_code}")
    return len(body)


def _plan(statement: Statement) -> list[str]:
    """The database's plan for *statement*, with the parameters it ran with."""
    with db.engine.connect() as conn:
        explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        rows = conn.exec_driver_sql(explain + statement.sql, statement.parameters).all()
    return [row[-1] for row in rows]


def _one_line(sql: str) -> str:
    return " ".join(sql.split())


def _print_report(results: dict[str, Any], size: dashboard_data.Size, rounds: int) -> None:
    built = results["build_seconds"]
    print("== dashboard: server time of the admin pages at a large installation's size ==")
    engine = "PostgreSQL (a copy of the data set)" if results["database"] == "postgresql" \
        else "SQLite"
    print(f"{engine} (migrated), {count(size.rules)} rules, {count(size.origins)} origins (one "
          f"rule with {count(size.big_rule_origins)}), {count(size.log_rows)} request_log rows "
          f"over {size.days} days from {count(size.noisy_rules)} rules, "
          f"{count(results['size']['audit_entries'])} audit entries (the latest "
          f"{size.big_rule_changes} add origins to the {count(size.big_rule_origins)}-origin "
          f"rule, each holding its whole state before and after)")
    print(f"built in {built['total']:.0f} s (" + ", ".join(
        f"{name} {seconds:.1f} s" for name, seconds in built.items() if name != "total")
        + "); rebuilt on every run, in a temporary folder")
    print(f"a signed-in admin, Flask test client; median of {rounds} rounds (pages shuffled "
          f"per round, after {WARMUP} warm-up requests each): wall time around client.get, "
          "and CPU time of the bench thread; queries and DB ms from one more request")
    print()
    rows = []
    baseline = results["pages"].get(BASELINE)
    for label, page in results["pages"].items():
        spread = page["wall_ms_rounds"]
        times = (f"{page['wall_ms'] / baseline['wall_ms']:,.1f}" if baseline else "n/a")
        rows.append([label, f"{page['wall_ms']:,.1f}", f"{min(spread):,.0f}–{max(spread):,.0f}",
                     f"{page['cpu_ms']:,.1f}", times,
                     str(page["queries"]), f"{page['database_ms']:,.1f}",
                     f"{page['bytes'] / 1024:,.0f}",
                     f"< {TARGET_MS:g}", "PASS" if page["meets"] else "MISS"])
    print(table(["page", "wall ms", "range", "CPU ms", f"× {BASELINE}", "queries", "DB ms",
                 "KiB", "target", "result"], rows))
    print(f"  × {BASELINE}: median wall time as a multiple of the {BASELINE}'s in the same run "
          "(comparable across machines and loads)")
    print("  DB ms: the page's statements replayed alone through the DB-API, every row fetched"
          + (" (on PostgreSQL, the database's own time is in wall ms, not CPU ms)"
             if results["database"] == "postgresql" else ""))
    service = results.get("overview_service")
    if service and baseline:
        print(f"  load_overview alone (the overview's figures, no request or rendering): "
              f"{service['wall_ms']:,.1f} ms wall ({service['wall_ms'] / baseline['wall_ms']:,.1f}"
              f" × {BASELINE}), {service['cpu_ms']:,.1f} ms CPU, median of {rounds} calls")
    for label, page in results["pages"].items():
        slowest = page["slowest"]
        if page["meets"]:
            if slowest:
                top = slowest[0]
                print(f"  {label}: slowest statement {top['ms']:.1f} ms: {_short(top['sql'])}")
            continue
        print()
        print(f"  {label} ({page['url']}) misses; its slowest statements:")
        for statement in slowest:
            print(f"    {statement['ms']:.1f} ms  {_short(statement['sql'], 300)}")
            for step in statement["plan"]:
                print(f"        plan: {step}")
        spots = page["hot_spots"]
        print(f"    where a profiled request spent its time (cumulative shares): rendering the "
              f"page {spots['render_share']:.0%}" + (
                  f", of which {spots['innermost_template_share']:.0%} in "
                  f"{spots['innermost_template']}" if spots["innermost_template"] else ""))
        for spot in spots["functions"]:
            print(f"      {spot['share']:4.0%}  {spot['where']} ({count(spot['calls'])} calls)")
    print()
    missed = [label for label, page in results["pages"].items() if not page["meets"]]
    print("targets:")
    print(f"  every page under {TARGET_MS:g} ms (median wall): "
          f"{'all' if not missed else ', '.join(missed) + ' over'} → {verdict(not missed)}")


def _short(sql: str, limit: int = 160) -> str:
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."
