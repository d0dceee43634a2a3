"""Section ``edits``: what one edit of a very large rule costs, and importing one.

A rule with 100,000 origins is built on a SQLite file whose schema the migrations made (and,
when ``BENCH_DATABASE_URL`` names a PostgreSQL database whose name starts with ``test`` or
holds ``bench``, on that database too: its schema is dropped and migrated first). Through
the JSON API and Flask's test client, with an admin token, every round adds one new origin,
adds one already present (the duplicate check), reads the rule and removes the origin
again; a figure is the median over rounds of the wall time around the request (the server's
time: the test client calls the app in this process). The audit entry an edit writes is
measured in JSON bytes.

Importing a policy whose one rule has 100,000 origins, then replacing it with a policy of one
small rule, runs in a process of its own (``python -m bench.edits import URL N``) on a freshly
migrated database, through ``POST /import``: its wall time and the peak resident memory of
the process during it (Linux's ``VmHWM``, its high-water mark reset just before the import
through ``/proc/self/clear_refs``; ``ru_maxrss`` would carry the parent's peak across
``exec``), beside the memory it held before; and where its wall time goes besides its
CPU time: how long the process waited for a CPU (its run-queue delay), and on PostgreSQL
the CPU time of the server processes and how long they waited.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app.config import ROOT
from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, Rule
from app.services.access import SYSTEM
from app.services.policy import create_rule
from app.services.tokens import create_token

from . import database
from .harness import Budget
from .report import count, table, verdict

ORIGINS = 100_000
SMOKE_ORIGINS = 2_000
ROUNDS = 9
EDIT_TARGET_MS = 50.0
IMPORT_TARGET_S = 5.0
IMPORT_TARGET_MB = 200.0
API = "/admin/api/v1"
RULE_PATH = "/api/big/*"
SMALL_POLICY = {"rules": [{"path": "/api/small/*", "origins": ["https://small.example.com"]}]}


def origin(index: int) -> str:
    return f"https://o{index:06d}.example.com"


def big_policy(size: int) -> dict[str, Any]:
    return {"rules": [{"path": RULE_PATH, "origins": [origin(i) for i in range(size)]}]}


def run(budget: Budget) -> dict[str, object]:
    size = SMOKE_ORIGINS if budget.smoke else ORIGINS
    rounds = 2 if budget.smoke else ROUNDS
    results: dict[str, object] = {"origins": size, "rounds": rounds}
    backends = [("sqlite", None)]
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        _check_disposable(url)
        backends.append(("postgresql", url))
    for name, given in backends:
        with tempfile.TemporaryDirectory(prefix="bench-edits-") as tmp:
            directory = Path(tmp)
            target = given or database.sqlite_url(directory / "edits.db")
            results[name] = {"edits": _edits(target, directory, size, rounds),
                             "import": _import(target, directory, size)}
    _print_report(results)
    return results


def _check_disposable(url: str) -> None:
    name = sa.engine.make_url(url).database or ""
    if not (name.startswith("test") or "bench" in name):
        raise SystemExit(f"BENCH_DATABASE_URL names the database {name!r}; the bench drops "
                         "its schema, so name a database that starts with test or holds "
                         "bench")


def _fresh(url: str, directory: Path) -> None:
    """An empty database, migrated: a SQLite file is removed, a PostgreSQL schema dropped."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    else:
        Path(engine.url.database or "").unlink(missing_ok=True)
    engine.dispose()
    database.migrate(url, directory)


# -- edits of one large rule ---------------------------------------------------------------


def _edits(url: str, directory: Path, size: int, rounds: int) -> dict[str, Any]:
    _fresh(url, directory)
    with database.bench_app(url, directory) as app:
        rule_id, secret = _big_rule(app, size)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {secret}"}
        rule_url = f"{API}/rules/{rule_id}"
        timings: dict[str, list[float]] = {
            "add origin": [], "add origin already there": [], "GET rule": [],
            "remove origin": []}
        cpu_timings: dict[str, list[float]] = {label: [] for label in timings}
        entry_bytes: dict[str, int] = {}
        for index in range(rounds + 1):  # the first round warms up, untimed
            added = f"https://new{index}.example.com"
            steps: list[tuple[str, Callable[[], Any], int]] = [
                ("add origin", lambda a=added: client.put(
                    f"{rule_url}/origins/{a}", headers=headers), 201),
                ("add origin already there", lambda: client.put(
                    f"{rule_url}/origins/{origin(size // 2)}", headers=headers), 200),
                ("GET rule", lambda: client.get(rule_url, headers=headers), 200),
                ("remove origin", lambda a=added: client.delete(
                    f"{rule_url}/origins/{a}", headers=headers), 204),
            ]
            for label, call, status in steps:
                started, cpu = time.perf_counter(), time.thread_time()
                response = call()
                response.get_data()
                elapsed = time.perf_counter() - started
                if index:
                    cpu_timings[label].append(time.thread_time() - cpu)
                if response.status_code != status:
                    raise RuntimeError(f"edits: {label} answered {response.status_code}, not "
                                       f"{status}: {response.get_data(as_text=True)[:300]}")
                if index:
                    timings[label].append(elapsed)
                if label in ("add origin", "remove origin"):
                    entry_bytes[label] = _last_entry_bytes(app)
        got = client.get(rule_url, headers=headers)
        body_bytes = len(got.get_data())
    return {
        "ms": {label: statistics.median(values) * 1e3 for label, values in timings.items()},
        "cpu_ms": {label: statistics.median(values) * 1e3
                   for label, values in cpu_timings.items()},
        "ms_rounds": {label: [v * 1e3 for v in values] for label, values in timings.items()},
        "audit_entry_bytes": entry_bytes,
        "get_rule_bytes": body_bytes,
    }


def _big_rule(app: Flask, size: int) -> tuple[int, str]:
    """The rule, its origins written by one multi-row insert, and an admin token."""
    with app.app_context():
        rule = create_rule({"path": RULE_PATH, "origins": [origin(0)]}, actor=SYSTEM)
        rule_id = rule.id
        now = rule.created_at
        db.session.execute(sa.insert(AllowedOrigin), [
            {"rule_id": rule_id, "value": origin(i), "kind": "exact", "note": "",
             "added_by": "bench", "added_at": now} for i in range(1, size)])
        db.session.commit()
        secret = create_token("bench", "admin", actor=SYSTEM).secret
        return rule_id, secret


def _last_entry_bytes(app: Flask) -> int:
    with app.app_context():
        entry = db.session.scalar(sa.select(AuditEntry).order_by(AuditEntry.id.desc()))
        size = sum(len(json.dumps(getattr(entry, side))) for side in ("before", "after", "delta")
                   if getattr(entry, side, None) is not None) if entry else 0
        db.session.rollback()
        return size


# -- importing a large policy, in a process of its own -------------------------------------


def _import(url: str, directory: Path, size: int) -> dict[str, Any]:
    _fresh(url, directory)
    done = subprocess.run(
        [sys.executable, "-m", "bench.edits", "import", url, str(size), str(directory)],
        cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"edits: the import process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _import_child(url: str, size: int, directory: Path) -> dict[str, Any]:
    with database.bench_app(url, directory) as app:
        with app.app_context():
            secret = create_token("bench", "admin", actor=SYSTEM).secret
            db.session.rollback()
        client: FlaskClient = app.test_client()
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        body = json.dumps(big_policy(size))
        client.get(f"{API}/rules", headers=headers)  # everything imported and warm
        before_mb = _reset_peak_rss_mb()
        waited, server = _cpu_wait_s(), _ServerCpu(app)
        started, cpu = time.perf_counter(), time.process_time()
        response = client.post(f"{API}/import", data=body, headers=headers)
        import_s, import_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        import_wait_s, import_server_cpu_s = _cpu_wait_s() - waited, server.used_s()
        if response.status_code != 200:
            raise RuntimeError(f"import answered {response.status_code}: "
                               f"{response.get_data(as_text=True)[:300]}")
        import_mb = _peak_rss_mb()
        _reset_peak_rss_mb()
        started, cpu = time.perf_counter(), time.process_time()
        response = client.post(f"{API}/import?replace=true", data=json.dumps(SMALL_POLICY),
                               headers=headers)
        replace_s, replace_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        if response.status_code != 200:
            raise RuntimeError(f"replace answered {response.status_code}: "
                               f"{response.get_data(as_text=True)[:300]}")
        with app.app_context():
            left = db.session.scalar(sa.select(sa.func.count()).select_from(AllowedOrigin))
            rules = db.session.scalar(sa.select(sa.func.count()).select_from(Rule))
            db.session.rollback()
        if (left, rules) != (1, 1):
            raise RuntimeError(f"after the replace: {rules} rules, {left} origins, not 1 and 1")
    return {"import_s": import_s, "import_cpu_s": import_cpu_s,
            "import_cpu_wait_s": import_wait_s, "import_server_cpu_s": import_server_cpu_s,
            "replace_s": replace_s,
            "replace_cpu_s": replace_cpu_s, "rss_before_mb": before_mb,
            "peak_rss_mb": import_mb, "peak_rss_after_replace_mb": _peak_rss_mb()}


def _cpu_wait_s() -> float:
    """How long this process's threads have waited for a CPU while ready to run (Linux's
    run-queue delay, ``/proc/self/task/*/schedstat``): on a busy machine, most of the gap
    between an import's wall time and its CPU time."""
    waited = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            waited += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return waited / 1e9


class _ServerCpu:
    """The CPU time the PostgreSQL server processes of this database used since it was
    made, and how long they waited for a CPU, read from ``/proc`` when the server runs on
    this machine (None otherwise, and on SQLite, where the database works in this
    process)."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._start = self._used()

    def _used(self) -> dict[int, tuple[float, float]] | None:
        with self._app.app_context():
            if db.engine.dialect.name != "postgresql":
                return None
            pids = db.session.scalars(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).all()
            db.session.rollback()
        used: dict[int, tuple[float, float]] = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                waited = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                return None  # a server elsewhere
            used[pid] = ((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
                         waited / 1e9)
        return used

    def used_s(self) -> tuple[float, float] | None:
        """(CPU seconds, seconds waiting for a CPU) since this was made."""
        end = self._used()
        if self._start is None or end is None:
            return None
        before = {pid: self._start.get(pid, (0.0, 0.0)) for pid in end}
        return (sum(end[pid][0] - before[pid][0] for pid in end),
                sum(end[pid][1] - before[pid][1] for pid in end))


def _reset_peak_rss_mb() -> float:
    """Start a new peak here; the memory the process holds now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    return _status_mb("VmHWM")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


# -- report --------------------------------------------------------------------------------


def _print_report(results: dict[str, Any]) -> None:
    size, rounds = results["origins"], results["rounds"]
    print(f"== edits: one edit of a rule with {count(size)} origins, and importing one ==")
    print(f"JSON API with an admin token, Flask test client; median wall time of {rounds} "
          "rounds (after one warm-up round), and CPU time of the bench thread; import and "
          "replace in a process of their own (wall and CPU time of that process)")
    misses = []
    for backend in ("sqlite", "postgresql"):
        if backend not in results:
            continue
        found = results[backend]
        edits, imported = found["edits"], found["import"]
        print()
        print(f"{backend}:")
        rows = []
        for label, ms in edits["ms"].items():
            spread = edits["ms_rounds"][label]
            ok = ms <= EDIT_TARGET_MS
            misses += [] if ok else [f"{backend} {label}"]
            rows.append([label, f"{ms:,.1f}", f"{min(spread):,.0f}–{max(spread):,.0f}",
                         f"{edits['cpu_ms'][label]:,.1f}", f"≤ {EDIT_TARGET_MS:g}",
                         "PASS" if ok else "MISS"])
        print(table(["request", "wall ms", "range", "CPU ms", "target", "result"], rows))
        print("  audit entry written (JSON bytes of before, after and delta): " + ", ".join(
            f"{label} {count(n)}" for label, n in edits["audit_entry_bytes"].items())
            + f"; GET rule body {count(edits['get_rule_bytes'])} bytes")
        import_ok = imported["import_s"] <= IMPORT_TARGET_S \
            and imported["peak_rss_mb"] <= IMPORT_TARGET_MB
        replace_ok = imported["replace_s"] <= IMPORT_TARGET_S
        misses += ([] if import_ok else [f"{backend} import"]) \
            + ([] if replace_ok else [f"{backend} replace"])
        server = imported.get("import_server_cpu_s")
        print(f"  import of {count(size)} origins: {imported['import_s']:.2f} s (CPU "
              f"{imported.get('import_cpu_s', float('nan')):.2f} s, waiting for a CPU "
              f"{imported.get('import_cpu_wait_s', float('nan')):.2f} s"
              + (f"; database server: CPU {server[0]:.2f} s, waiting {server[1]:.2f} s"
                 if server is not None else "")
              + "), peak RSS "
              f"{imported['peak_rss_mb']:.0f} MB (before: {imported['rss_before_mb']:.0f} MB)"
              f" → {verdict(import_ok)}; replaced by a small policy: "
              f"{imported['replace_s']:.2f} s (CPU "
              f"{imported.get('replace_cpu_s', float('nan')):.2f} s, peak RSS "
              f"{imported['peak_rss_after_replace_mb']:.0f} MB) → {verdict(replace_ok)}")
    print()
    print(f"targets: edits and GET ≤ {EDIT_TARGET_MS:g} ms, import ≤ {IMPORT_TARGET_S:g} s "
          f"and ≤ {IMPORT_TARGET_MB:g} MB peak, replace ≤ {IMPORT_TARGET_S:g} s: "
          + ("all met" if not misses else "missed: " + ", ".join(misses)))


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "import":
        raise SystemExit("usage: python -m bench.edits import DATABASE_URL ORIGINS INSTANCE")
    print(json.dumps(_import_child(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))))
