"""Section ``reload``: what a policy change costs each process, at 100,000 and 1,000,000 origins.

The policy is two tenant-selecting rules, one reading the tenant from the ``X-Tenant`` header
(its preflights are decided against every tenant's origins at once) and one from the route,
with *tenants* tenants of 100 origins each, half on each rule. It lives in a SQLite file built
by the migrations (or PostgreSQL: ``BENCH_DATABASE_URL``, a database the bench may empty).

Reported, per size: a cold start (a new process loading and compiling the policy: wall time,
CPU and the growth of its resident memory, measured in a process of its own); the CPU one
process spends on an incremental reload after one origin is added to (or removed from) one
tenant's allowlist, through the service layer's change unit (``policy_change``), and on a full
reload; and the latency of decisions made by a request thread while reloads run beside it,
against the same thread with no reload (p50 and p99).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .database import bench_app, migrate, sqlite_url
from .harness import Budget
from .report import count, ratio, table, verdict

ORIGINS_PER_TENANT = 100
HEADER_PATH = "/api/h/*"
VIEW_PATH = "/api/t/*/orders"
MAX_INCREMENTAL_CPU_MS = 50.0
MAX_P99_RATIO = 2.0
MAX_COLD_START_S = 10.0
MAX_SNAPSHOT_MB = 300.0
LATENCY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Scale:
    tenants: int
    changes: int  # incremental reloads measured
    full_reloads: int

    @property
    def origins(self) -> int:
        return self.tenants * ORIGINS_PER_TENANT


FULL = (Scale(tenants=1_000, changes=21, full_reloads=3),
        Scale(tenants=10_000, changes=11, full_reloads=2))
SMOKE = (Scale(tenants=20, changes=3, full_reloads=1),)


def run(budget: Budget) -> dict[str, object]:
    scales = SMOKE if budget.smoke else FULL
    results: dict[str, object] = {}
    rows = []
    for scale in scales:
        with tempfile.TemporaryDirectory(prefix="bench-reload-") as folder:
            found = _run_scale(scale, Path(folder))
        results[str(scale.origins)] = found
        rows.append(found)
    print("Section reload: one origin added to one tenant's allowlist, as each process sees it")
    print(table(
        ["origins", "cold load s", "cold CPU s", "RSS +MB", "incr CPU ms", "full CPU ms",
         "full/incr", "p99 idle us", "p99 reload us", "ratio"],
        [[count(int(r["origins"])), f"{r['cold_wall_s']:.2f}", f"{r['cold_cpu_s']:.2f}",
          f"{r['cold_rss_mb']:.0f}", f"{r['incremental_cpu_ms']:.1f}",
          f"{r['full_cpu_ms']:.0f}", f"{r['full_cpu_ms'] / r['incremental_cpu_ms']:.0f}x",
          f"{r['p99_idle_us']:.1f}", f"{r['p99_reloading_us']:.1f}",
          ratio(r["p99_ratio"])] for r in rows]))
    largest = rows[-1]
    print(f"  incremental reload ≤ {MAX_INCREMENTAL_CPU_MS:.0f} ms CPU: "
          f"{verdict(largest['incremental_cpu_ms'] <= MAX_INCREMENTAL_CPU_MS)}; "
          f"p99 while reloading ≤ {MAX_P99_RATIO:.0f}x idle: "
          f"{verdict(largest['p99_ratio'] <= MAX_P99_RATIO)}; "
          f"cold start ≤ {MAX_COLD_START_S:.0f} s: "
          f"{verdict(largest['cold_wall_s'] <= MAX_COLD_START_S)}; "
          f"snapshot ≤ {MAX_SNAPSHOT_MB:.0f} MB: "
          f"{verdict(largest['cold_rss_mb'] <= MAX_SNAPSHOT_MB)} "
          f"(at {count(int(largest['origins']))} origins)")
    print("  medians; CPU is the reloading thread's (time.thread_time); RSS +MB is the growth "
          "of a new process's resident memory over the cold load")
    return results


def _run_scale(scale: Scale, folder: Path) -> dict[str, Any]:
    url = os.environ.get("BENCH_DATABASE_URL") or sqlite_url(folder / "reload.db")
    if url.startswith("postgresql"):
        _empty_postgresql(url)
    migrate(url, folder / "instance")
    with bench_app(url, folder / "instance", CORS_REFRESH_INTERVAL=3600.0) as app:
        tenant_ids, rule_ids = _populate(app, scale)
        cold = _cold_start(url)
        from cors_control.cache import PolicyCache
        from cors_control.database import DatabasePolicySource

        engine = sa.create_engine(url)
        try:
            cache = PolicyCache(DatabasePolicySource(engine), interval=3600)
            cache.refresh()
            changes = _Changes(app, tenant_ids, rule_ids)
            incremental = []
            for _ in range(scale.changes):
                changes.make()
                started = time.thread_time()
                assert cache.refresh(), "the version moved"
                incremental.append(time.thread_time() - started)
                assert cache.last_load == "incremental", cache.last_load
            full = []
            for _ in range(scale.full_reloads):
                started = time.thread_time()
                cache.reload()
                full.append(time.thread_time() - started)
            idle, reloading = _latency(cache, changes, scale)
        finally:
            engine.dispose()
    return {
        "origins": scale.origins, "tenants": scale.tenants, **cold,
        "incremental_cpu_ms": statistics.median(incremental) * 1000,
        "incremental_cpu_ms_all": [round(value * 1000, 2) for value in incremental],
        "full_cpu_ms": statistics.median(full) * 1000,
        "p50_idle_us": idle[0], "p99_idle_us": idle[1],
        "p50_reloading_us": reloading[0], "p99_reloading_us": reloading[1],
        "p99_ratio": reloading[1] / idle[1],
    }


def _empty_postgresql(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def _populate(app: Any, scale: Scale) -> tuple[list[int], list[int]]:
    """Two rules through the services; the tenants and their origins in bulk (a million
    changes through the services would take hours), then one version for all of it."""
    from app.extensions import db
    from app.models import AllowedOrigin, PolicyState, Tenant
    from app.services.access import Actor
    from app.services.policy import create_rule

    admin = Actor("bench", "cli")
    with app.app_context():
        rule_ids = [
            create_rule({"path": HEADER_PATH,
                         "tenant_selector": {"source": "header", "key": "X-Tenant"}},
                        actor=admin).id,
            create_rule({"path": VIEW_PATH,
                         "tenant_selector": {"source": "view-arg", "key": "tenant"}},
                        actor=admin).id,
        ]
        now = time.time()
        from datetime import UTC, datetime
        stamp = datetime.fromtimestamp(now, UTC)
        db.session.execute(sa.insert(Tenant), [
            {"slug": _slug(i), "name": _slug(i), "created_at": stamp, "paths": []}
            for i in range(scale.tenants)])
        tenant_ids = list(db.session.scalars(sa.select(Tenant.id).order_by(Tenant.id)))
        # Through the table, not the model: the same rows without the ORM's work per row
        # (a third of the time the million-origin scale took to populate).
        insert = sa.insert(AllowedOrigin.__table__)
        batch = []
        for index, tenant_id in enumerate(tenant_ids):
            slug = _slug(index)
            for j in range(ORIGINS_PER_TENANT):
                batch.append({"rule_id": rule_ids[j % 2], "tenant_id": tenant_id,
                              "value": f"https://app{j}.{slug}.example",
                              "kind": "exact", "note": "", "added_by": "bench",
                              "added_at": stamp})
            if len(batch) >= 50_000:
                db.session.execute(insert, batch)
                batch = []
        if batch:
            db.session.execute(insert, batch)
        db.session.execute(sa.update(PolicyState).values(version=PolicyState.version + 1))
        db.session.commit()
    return tenant_ids, rule_ids


def _slug(index: int) -> str:
    return f"customer-{index:05d}"


class _Changes:
    """One origin added to a random tenant's allowlist, then removed, and so on: each one
    change through ``policy_change`` (the service's unit of work, which records the change
    log), writing the row as ``add_origin`` does without loading the rule's million origins."""

    def __init__(self, app: Any, tenant_ids: list[int], rule_ids: list[int]) -> None:
        self.app = app
        self.tenant_ids = tenant_ids
        self.rule_ids = rule_ids
        self.added: int | None = None
        self.random = random.Random(12)

    def make(self) -> None:
        from app.extensions import db
        from app.models import AllowedOrigin
        from app.services.access import Actor
        from app.services.changes import policy_change

        with self.app.app_context(), policy_change(Actor("bench", "cli")):
            if self.added is None:
                origin = AllowedOrigin(
                    rule_id=self.random.choice(self.rule_ids),
                    tenant_id=self.random.choice(self.tenant_ids),
                    value=f"https://new{self.random.randrange(10**9)}.example", kind="exact",
                    note="", added_by="bench")
                db.session.add(origin)
                db.session.flush()
                self.added = origin.id
            else:
                db.session.delete(db.session.get(AllowedOrigin, self.added))
                self.added = None


def _latency(cache: Any, changes: _Changes, scale: Scale) -> tuple[tuple[float, float],
                                                                    tuple[float, float]]:
    """p50 and p99 of decisions by a request thread: with no reload, then while the main
    thread applies one change every 100 ms (the change written first, the reload timed)."""
    from cors_control.decision import decide

    tenants = [_slug(i) for i in range(scale.tenants)]
    rng = random.Random(3)
    requests = [
        ({"Origin": f"https://app{2 * rng.randrange(50)}.{tenant}.example", "X-Tenant": tenant,
          "Access-Control-Request-Method": "PUT"} if n % 2 else
         {"Origin": f"https://app{2 * rng.randrange(50)}.{tenant}.example",
          "X-Tenant": tenant})
        for n, tenant in enumerate(rng.choice(tenants) for _ in range(5000))]

    def measure(seconds: float, during: threading.Event | None) -> list[float]:
        samples: list[float] = []
        stop = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < stop:
            headers = requests[n % len(requests)]
            method = "OPTIONS" if "Access-Control-Request-Method" in headers else "GET"
            started = time.perf_counter()
            decide(cache.snapshot, method, "/api/h/x", headers)
            samples.append(time.perf_counter() - started)
            n += 1
            if n % 50 == 0:
                time.sleep(0.0005)  # an open-loop-ish stream, not a spin on the GIL
        return samples

    idle = measure(LATENCY_SECONDS, None)
    done = threading.Event()
    found: list[float] = []
    worker = threading.Thread(target=lambda: found.extend(measure(LATENCY_SECONDS, done)))
    worker.start()
    while worker.is_alive():
        changes.make()
        cache.refresh()
        time.sleep(0.1)
    worker.join()
    return _quantiles(idle), _quantiles(found)


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (ordered[len(ordered) // 2] * 1e6, ordered[int(len(ordered) * 0.99)] * 1e6)


# -- the cold start, in a process of its own -----------------------------------------------

def _cold_start(url: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "bench.reload", url], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"the cold start failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cold_main(url: str) -> None:
    import gc

    from cors_control.cache import load_policy
    from cors_control.database import DatabasePolicySource

    source = DatabasePolicySource.from_url(url)
    source.current_version()  # connect first: the driver's memory is not the snapshot's
    gc.collect()
    before = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    snapshot = load_policy(source)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.collect()
    print(json.dumps({"cold_wall_s": wall, "cold_cpu_s": cpu, "cold_rss_mb": _rss_mb() - before,
                      "cold_origins": snapshot.origin_count}))


if __name__ == "__main__":
    _cold_main(sys.argv[1])
