"""Section ``control-plane``: how fast a change reaches a data plane in control-plane mode.

The admin application runs on a real server (werkzeug, threaded) on a SQLite database of its
own (or ``BENCH_DATABASE_URL``: PostgreSQL, where changes are pushed), and two engines follow
its policy in this process: a data plane (``CorsControl(api, control_plane=URL, token=...)``,
long-polling it over HTTP) and, as the same-run baseline, an engine in database mode
(``CorsControl(api, database_url=...)``, the mode the data plane replaces: pushed changes on
PostgreSQL, polling on SQLite), both at the default refresh interval. The bench makes
changes one at a time through the service layer and measures, for each, the time from the
commit's return to the moment each engine installed the new version
(``PolicyCache.wait_for_version``: no polling by the bench itself).
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from werkzeug.serving import make_server

from app.services.access import Actor
from app.services.policy import add_origin, import_policy, remove_origin
from app.services.tokens import create_token
from cors_control import CorsControl

from . import database
from .harness import Budget
from .report import table

ACTOR = Actor("bench", "cli")
ORIGIN = "https://control-plane.example.com"
CHANGES = 40
TIMEOUT = 30.0


def run(budget: Budget) -> dict[str, object]:
    changes = 3 if budget.smoke else CHANGES
    with tempfile.TemporaryDirectory(prefix="bench-control-plane-") as folder:
        url = os.environ.get("BENCH_DATABASE_URL") or database.sqlite_url(
            Path(folder) / "control-plane.db")
        database.migrate(url, Path(folder))
        with database.bench_app(url, Path(folder), CORS_REFRESH_INTERVAL=0.5) as admin:
            results = _measure(admin, url, changes)
    _print_report(results, url)
    return results


def _measure(admin: Flask, url: str, changes: int) -> dict[str, object]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per poll
    with admin.app_context():
        import_policy({"rules": [{"path": "/api/*", "origins": ["https://app.example.com"]}]},
                      actor=ACTOR, replace=True)
        secret = create_token(f"bench-{time.time_ns()}", "data-plane", actor=ACTOR).secret
        rule_id = admin.extensions["sqlalchemy"].session.scalar(
            sa.text("SELECT id FROM rules WHERE path = '/api/*'"))
    server = make_server("127.0.0.1", 0, admin, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    data_plane = CorsControl(Flask("data-plane"),
                             control_plane=f"http://127.0.0.1:{server.server_port}",
                             token=secret)
    # Database mode as an API host would run it: pushed changes on PostgreSQL, polling on SQLite.
    direct = CorsControl(Flask("direct"), database_url=url, request_log=False)
    engines = {"data plane (HTTP long poll)": data_plane, "database (baseline)": direct}
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    try:
        for control in engines.values():
            control.cache.get()
        for index in range(changes):
            with admin.app_context():
                if index % 2 == 0:
                    add_origin(rule_id, ORIGIN, actor=ACTOR)
                else:
                    remove_origin(rule_id, ORIGIN, actor=ACTOR)
                committed = time.time()
                version = admin.extensions["sqlalchemy"].session.scalar(
                    sa.text("SELECT version FROM policy_state WHERE id = 1"))
            for name, control in engines.items():
                snapshot = control.cache.wait_for_version(version - 1, TIMEOUT)
                if snapshot is None or snapshot.version < version:
                    raise RuntimeError(f"{name} did not serve version {version} within "
                                       f"{TIMEOUT} s")
                seconds[name].append(max(0.0, snapshot.loaded_at - committed))
    finally:
        for control in engines.values():
            control.close()
        server.shutdown()
        server.server_close()
    baseline = statistics.median(seconds["database (baseline)"])
    return {name: {"median_ms": statistics.median(values) * 1000,
                   "p95_ms": _p95(values) * 1000, "max_ms": max(values) * 1000,
                   "ratio_to_baseline": statistics.median(values) / baseline if baseline else None,
                   "changes": len(values)}
            for name, values in seconds.items()}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _print_report(results: dict[str, object], url: str) -> None:
    print(f"control-plane: commit to installed version, {sa.make_url(url).get_backend_name()}")
    rows = [("engine", "median", "p95", "max", "x baseline")]
    for name, figures in results.items():
        assert isinstance(figures, dict)
        ratio = figures["ratio_to_baseline"]
        rows.append((name, f"{figures['median_ms']:.0f} ms", f"{figures['p95_ms']:.0f} ms",
                     f"{figures['max_ms']:.0f} ms", f"{ratio:.2f}" if ratio else "-"))
    print(table(rows[0], rows[1:]))
