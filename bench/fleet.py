"""Section ``fleet``: how fast a change reaches every worker of a fleet on PostgreSQL.

The section starts its own fleet: two gunicorn instances of four workers each, on a
PostgreSQL database it owns (``BENCH_DATABASE_URL``, default the database ``cors_bench`` on
127.0.0.1:5432, created if missing; its contents are replaced), the schema built by the
migrations. It then makes 50 changes, one at a time, through the service layer of this
process (add, then remove, one origin), and for each one measures, for every worker, the time
from the moment the commit returned to the moment that worker installed the new version.

Each worker says when it installed its snapshot: ``/healthz`` reports the worker's pid, the
version it serves and ``loaded_at``, the wall-clock time its snapshot was built (the same
clock as this process: the fleet runs on this machine). So the figure does not depend on how
often the bench asks; asking only has to reach every worker once per change. The installation times
also check the order: a worker that installed a newer version and then an older one is
counted.

The fleet runs twice: with push (the default: NOTIFY and LISTEN, polling every 5 s as a
safety net), and with push off (``CORS_NOTIFY_URL=off``, polling every 0.5 s) for contrast.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from app.config import ROOT
from app.services.access import Actor

from . import database
from .harness import Budget
from .report import table, verdict

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/cors_bench"
INSTANCES = 2
WORKERS = 4
CHANGES = 50
P95_TARGET_MS = 100.0
MAX_TARGET_MS = 250.0
ORIGIN = "https://fleet.example.com"
ACTOR = Actor("bench", "cli")


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    env: dict[str, str]


PUSH = Mode("push (NOTIFY/LISTEN, poll every 5 s)", {})
POLL = Mode("poll only (CORS_NOTIFY_URL=off, every 0.5 s)",
            {"CORS_NOTIFY_URL": "off", "CORS_REFRESH_INTERVAL": "0.5"})


@dataclass
class Observations:
    """What the workers said: per pid, the versions they answered with, and when each
    worker installed each version."""

    versions: dict[int, list[int]] = field(default_factory=dict)
    loaded_at: dict[tuple[int, int], float] = field(default_factory=dict)  # (pid, version)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: dict) -> None:
        pid, version = body["pid"], body["policy_version"]
        if version is None:
            return
        with self.lock:
            self.versions.setdefault(pid, []).append(version)
            self.loaded_at.setdefault((pid, version), body["loaded_at"])

    def serving(self, version: int) -> set[int]:
        with self.lock:
            return {pid for (pid, v) in self.loaded_at if v >= version}

    def regressions(self) -> int:
        """Snapshots a worker installed after one of a newer version (by its own clock)."""
        count = 0
        with self.lock:
            for pid in self.versions:
                installed = sorted((at, v) for (p, v), at in self.loaded_at.items() if p == pid)
                highest = -1
                for _, version in installed:
                    if version < highest:
                        count += 1
                    highest = max(highest, version)
        return count


def run(budget: Budget) -> dict[str, object]:
    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    changes = 5 if budget.smoke else CHANGES
    print(f"== fleet: a change reaching every worker ({INSTANCES} gunicorn instances x "
          f"{WORKERS} workers on PostgreSQL, {changes} changes) ==")
    problem = _prepare_database(url)
    if problem:
        print(f"  not run: {problem}")
        return {"not_run": problem}
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        with database.bench_app(url, Path(tmp) / "writer") as writer:
            rule_id = _create_rule(writer)
            for key, mode in (("push", PUSH), ("poll", POLL)):
                results[key] = _measure(writer, rule_id, url, Path(tmp), mode, changes)
    rows = []
    for key, mode in (("push", PUSH), ("poll", POLL)):
        r = results[key]
        assert isinstance(r, dict)
        rows.append([mode.name, f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
                     f"{r['max_ms']:.1f}", f"{r['every_worker_p50_ms']:.1f}",
                     str(r["workers"]), str(r["regressions"])])
    print(table(["commit -> every worker serves it, ms", "p50", "p95", "max",
                 "any worker p50", "workers", "went back"], rows))
    push = results["push"]
    assert isinstance(push, dict)
    print(f"  an allowed GET, p99, push pass: {_ms(push['request_p99_ms_during_reload'])} while "
          f"a change reloads ({push['requests_during_reload']} requests), "
          f"{_ms(push['request_p99_ms_otherwise'])} otherwise ({push['requests_otherwise']})")
    print(f"  push: p95 target {P95_TARGET_MS:.0f} ms: "
          f"{verdict(push['p95_ms'] <= P95_TARGET_MS)}; max target {MAX_TARGET_MS:.0f} ms: "
          f"{verdict(push['max_ms'] <= MAX_TARGET_MS)}; no worker went back to an older "
          f"version: {verdict(push['regressions'] == 0)}")
    print("  (p50/p95/max: per change, the slowest worker; any worker p50: over every worker "
          "and change)")
    print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(a shared machine: the figures include waiting for a CPU)")
    results["load_average"] = os.getloadavg()[0]
    return results


def _prepare_database(url: str) -> str | None:
    """Create the bench's database if it is missing, empty it, migrate it; or say why not."""
    target = sa.make_url(url)
    if not target.drivername.startswith("postgresql"):
        return f"BENCH_DATABASE_URL must name a PostgreSQL database, not {target.drivername}"
    server = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 3})
    try:
        with server.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": target.database}).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    except sa.exc.OperationalError as exc:
        return (f"no PostgreSQL at {target.render_as_string(hide_password=True)} "
                f"({str(exc.orig).splitlines()[0]}); set BENCH_DATABASE_URL")
    finally:
        server.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-migrate-") as tmp:
        database.migrate(url, Path(tmp))
    return None


def _create_rule(writer) -> int:
    from app.services.policy import create_rule

    with writer.app_context():
        return create_rule({"path": "/api/*", "origins": ["https://app.example.com"]},
                           actor=ACTOR).id


def _measure(writer, rule_id: int, url: str, tmp: Path, mode: Mode,
             changes: int) -> dict[str, object]:
    from app.services.policy import add_origin, remove_origin

    observations = Observations()
    with _fleet(url, tmp, mode) as ports:
        pids = _discover_workers(ports, observations)
        slowest: list[float] = []
        every: list[float] = []
        windows: list[tuple[float, float]] = []
        traffic = Traffic(ports)
        traffic.start()
        for i in range(changes):
            time.sleep(0.2)  # let the fleet settle: each change is measured on its own
            with writer.app_context():
                if i % 2 == 0:
                    add_origin(rule_id, ORIGIN, actor=ACTOR)
                else:
                    remove_origin(rule_id, ORIGIN, actor=ACTOR)
                committed = time.time()
                version = _version(writer)
            time.sleep(0.3)  # most workers have it by now; asking earlier only adds load
            _wait_for_every_worker(ports, observations, pids, version)
            delays = [(observations.loaded_at[(pid, _first_at_least(observations, pid,
                                                                     version))] - committed)
                      for pid in pids]
            every.extend(delays)
            slowest.append(max(delays))
            windows.append((committed, committed + max(delays)))
        traffic.stop()
    ms = sorted(d * 1000 for d in slowest)
    during, idle = traffic.split(windows)
    return {
        "mode": mode.name,
        "changes": changes,
        "workers": len(pids),
        "p50_ms": statistics.median(ms),
        "p95_ms": _percentile(ms, 0.95),
        "max_ms": ms[-1],
        "every_worker_p50_ms": statistics.median(d * 1000 for d in every),
        "regressions": observations.regressions(),
        "request_p99_ms_during_reload": _percentile(during, 0.99) if during else None,
        "request_p99_ms_otherwise": _percentile(idle, 0.99) if idle else None,
        "requests_during_reload": len(during),
        "requests_otherwise": len(idle),
        "slowest_worker_ms": ms,
    }


class Traffic:
    """One client sending allowed GETs to the instances in turn, one at a time, all along;
    each request's start (wall clock) and latency are kept."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.samples: list[tuple[float, float]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        turn = 0
        while not self._stopped.is_set():
            port = self.ports[turn % len(self.ports)]
            turn += 1
            started, clock = time.time(), time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", "/api/orders",
                                   headers={"Origin": "https://app.example.com"})
                response = connection.getresponse()
                response.read()
                if response.getheader("Access-Control-Allow-Origin") is None:
                    raise RuntimeError("the allowed GET was not allowed")
            finally:
                connection.close()
            self.samples.append((started, (time.perf_counter() - clock) * 1000))
            time.sleep(0.002)

    def split(self, windows: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        """Latencies (ms, sorted) of requests that started while a change was reloading,
        and of the others."""
        during, idle = [], []
        for started, latency in self.samples:
            inside = any(a <= started <= b for a, b in windows)
            (during if inside else idle).append(latency)
        return sorted(during), sorted(idle)


def _ms(value: object) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _first_at_least(observations: Observations, pid: int, version: int) -> int:
    with observations.lock:
        return min(v for (p, v) in observations.loaded_at if p == pid and v >= version)


def _version(writer) -> int:
    from app.services.changes import policy_version

    return policy_version()


def _percentile(sorted_values: list[float], q: float) -> float:
    index = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


@contextmanager
def _fleet(url: str, tmp: Path, mode: Mode) -> Iterator[list[int]]:
    processes: list[subprocess.Popen] = []
    ports: list[int] = []
    try:
        for n in range(INSTANCES):
            port = free_port()
            env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench-secret-key",
                   "INSTANCE_PATH": str(tmp / f"instance-{n}"), "DEMO_POLICY": "0",
                   **mode.env}
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b",
                 f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"],
                cwd=ROOT, env=env))
            ports.append(port)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _health(port: int) -> dict | None:
    # A new connection each time, so that any idle worker of the instance may answer.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz", headers={"Connection": "close"})
        response = connection.getresponse()
        return json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()


def _discover_workers(ports: list[int], observations: Observations) -> list[int]:
    """Ask until every worker of every instance has answered (each loads its policy then)."""
    deadline = time.monotonic() + 120
    seen: dict[int, set[int]] = {port: set() for port in ports}
    while time.monotonic() < deadline:
        for port in ports:
            body = _health(port)
            if body is not None:
                observations.record(body)
                seen[port].add(body["pid"])
        if all(len(pids) >= WORKERS for pids in seen.values()):
            time.sleep(1.0)  # every listener connected and past its first read
            return sorted(pid for pids in seen.values() for pid in pids)
        time.sleep(0.01)
    raise RuntimeError(f"the fleet did not answer from every worker within 120 s: {seen}")


def _wait_for_every_worker(ports: list[int], observations: Observations, pids: list[int],
                           version: int) -> None:
    """Ask each instance from a few threads until every worker reported *version*."""
    wanted = set(pids)
    done = threading.Event()

    def ask(port: int) -> None:
        while not done.is_set():
            body = _health(port)
            if body is not None:
                observations.record(body)
            if wanted <= observations.serving(version):
                done.set()
            time.sleep(0.005)

    threads = [threading.Thread(target=ask, args=(port,), daemon=True)
               for port in ports for _ in range(2)]
    for thread in threads:
        thread.start()
    if not done.wait(timeout=60):
        done.set()
        raise RuntimeError(f"not every worker served version {version} within 60 s")
    for thread in threads:
        thread.join()
