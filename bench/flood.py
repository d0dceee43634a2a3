"""Section ``flood``: a flood of refused requests from distinct origins, against allowed ones.

50,000 GETs from 50,000 distinct origins the rule does not allow, and 50,000 GETs from its 3
allowed origins, through the engine with the real request log attached: the decision
counters and the recorder that production attaches (``RequestLog.init_app``), the recorder
writing to a SQLite database built by the migrations, flushing from its own thread every
2 s, with at most 10,000 distinct keys in memory between flushes. Refused and allowed
requests run in alternating blocks (which comes first is shuffled per pair), so noise on the
shared machine lands on both.

The request path runs in the bench thread; the flushes run in the recorder's thread. Both
are timed in CPU seconds of their own thread, so the refused figure is given twice: the
request path alone, and charged with every flush the flood caused. A second, untimed pass
under ``tracemalloc`` measures the memory the flood holds.
"""

from __future__ import annotations

import gc
import random
import resource
import string
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from werkzeug.test import EnvironBuilder

from app.models import RequestLogEntry
from app.request_log.metrics import DecisionCounters
from cors_control import CorsControl
from cors_control.database import DatabaseRefusalSink, create_source_engine
from cors_control.refusals import OVERFLOW, RecorderSettings, RefusalRecorder

from . import apps, database
from .harness import Budget, clock, frozen_heap
from .report import count, ratio, table, us, verdict

MIN_RATIO = 0.90
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) " \
             "Chrome/124.0 Safari/537.36"
REFUSED_DOMAIN = "attacker.example"
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Scale:
    requests: int  # of each kind
    block: int  # requests per timed block
    max_keys: int
    flush_interval: float
    warmup: int


FULL = Scale(requests=50_000, block=2_000, max_keys=10_000, flush_interval=2.0, warmup=1_000)
# Smoke test: the same shape, small enough to run in a second or two.
SMOKE = Scale(requests=2_000, block=250, max_keys=400, flush_interval=0.2, warmup=100)


@dataclass(frozen=True, slots=True)
class Flush:
    started: float  # time.perf_counter()
    wall: float  # seconds
    cpu: float  # CPU seconds of the thread that flushed
    rows: int
    by_flusher: bool  # the recorder's own thread, not an explicit call


class TimedRecorder(RefusalRecorder):
    """The real recorder, each flush timed; the request path (``record``) is untouched."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flushes: list[Flush] = []

    def flush(self) -> int:
        started, cpu = time.perf_counter(), clock()
        rows = super().flush()
        self.flushes.append(Flush(started, time.perf_counter() - started, clock() - cpu, rows,
                                  by_flusher=threading.current_thread() is self._thread))
        return rows


@dataclass(slots=True)
class Spent:
    """Time spent serving one kind of request: CPU of the bench thread, and wall."""

    cpu: float = 0.0
    wall: float = 0.0
    blocks: list[tuple[float, float]] = field(default_factory=list)  # (cpu, wall) per block

    def add(self, cpu: float, wall: float) -> None:
        self.cpu += cpu
        self.wall += wall
        self.blocks.append((cpu, wall))


def run(budget: Budget) -> dict[str, object]:
    scale = SMOKE if budget.smoke else FULL
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        directory = Path(tmp)
        url = database.sqlite_url(directory / "flood.db")
        database.migrate(url, directory)
        refused, allowed = _environs(scale)
        timed = _timed_flood(url, scale, refused, allowed)
        memory = _memory_pass(url, scale, refused, allowed)
    results = {"scale": _scale_json(scale), **timed, "memory": memory}
    _print_report(results, scale)
    return results


# -- the requests ----------------------------------------------------------------------------


def _environs(scale: Scale) -> tuple[list[apps.Environ], list[apps.Environ]]:
    """Warm-up plus flood environs: refused from distinct random origins, allowed from the
    rule's 3 origins in turn. Built once, before any timing."""
    total = scale.warmup + scale.requests
    rng = random.Random(20_000)
    names: set[str] = set()
    while len(names) < total:
        names.add("".join(rng.choices(string.ascii_lowercase + string.digits, k=12)))
    template = EnvironBuilder(path=apps.PATH, method="GET", headers={
        "Origin": "https://placeholder.example", "User-Agent": USER_AGENT,
        "Referer": "https://placeholder.example/"}).get_environ()

    def environ(origin: str) -> apps.Environ:
        # A browser's cross-origin fetch: the page's origin, and the page as referrer.
        return {**template, "HTTP_ORIGIN": origin, "HTTP_REFERER": origin + "/"}

    refused = [environ(f"https://{name}.{REFUSED_DOMAIN}") for name in sorted(names)]
    rng.shuffle(refused)
    origins = apps.allowed_origins(3)
    allowed = [environ(origins[i % len(origins)]) for i in range(total)]
    return refused, allowed


def _logged_app(url: str, scale: Scale) -> tuple[Flask, CorsControl, TimedRecorder]:
    """The bare view under the engine (one rule, /api/*, 3 origins) with the request log's
    listeners attached as ``RequestLog.init_app`` attaches them."""
    app = apps.bare_app()
    control = CorsControl(app, source=apps.StaticSource.for_origins(apps.allowed_origins(3)))
    recorder = TimedRecorder(DatabaseRefusalSink(create_source_engine(url)), RecorderSettings(
        flush_interval=scale.flush_interval, max_keys=scale.max_keys))
    counters = DecisionCounters()
    control.add_listener(counters.observe, every_decision=False)
    control.add_tally(counters.observe_all)
    control.add_listener(recorder.record, every_decision=False)
    control.cache.get()
    return app, control, recorder


def _check(app: Flask, refused: apps.Environ, allowed: apps.Environ) -> None:
    expected = {"refused": (refused, None), "allowed": (allowed, allowed["HTTP_ORIGIN"])}
    for kind, (environ, acao) in expected.items():
        status, headers = apps.probe(app, environ)
        if status != 200 or headers.get("Access-Control-Allow-Origin") != acao:
            raise RuntimeError(f"flood: the {kind} request got {status} with ACAO "
                               f"{headers.get('Access-Control-Allow-Origin')!r}, not {acao!r}")


# -- the timed flood -------------------------------------------------------------------------


def _timed_flood(url: str, scale: Scale, refused: list[apps.Environ],
                 allowed: list[apps.Environ]) -> dict[str, object]:
    """Refused and allowed blocks in turn, the flusher running as in production; then the
    final flush and a count of what reached the database."""
    app, control, recorder = _logged_app(url, scale)
    serve = apps.serve(app)
    try:
        _check(app, refused[0], allowed[0])
        for environ in refused[:scale.warmup] + allowed[:scale.warmup]:
            serve(environ)
        # The warm-up's refusals are not part of the flood: write them, then forget them.
        recorder.flush()
        with recorder.sink.engine.begin() as conn:
            conn.execute(sa.delete(RequestLogEntry.__table__))
        recorder.flushes.clear()
        overflow_before = recorder.overflow_total

        flood = {"refused": refused[scale.warmup:], "allowed": allowed[scale.warmup:]}
        spent = {kind: Spent() for kind in flood}
        rss_start = _rss()
        rss_peak = rss_start
        with frozen_heap():  # the prebuilt environs: no collection should walk them
            started = time.perf_counter()
            order = list(flood)
            shuffler = random.Random(0)
            for first in range(0, scale.requests, scale.block):
                shuffler.shuffle(order)
                for kind in order:
                    block = flood[kind][first:first + scale.block]
                    wall, cpu = time.perf_counter(), clock()
                    for environ in block:
                        serve(environ)
                    spent[kind].add(clock() - cpu, time.perf_counter() - wall)
                    rss_peak = max(rss_peak, _rss())
            ended = time.perf_counter()
        during = [f for f in recorder.flushes if f.started < ended]
        recorder.stop(flush=True)  # the final flush, after the flood
        after = [f for f in recorder.flushes if f.started >= ended and f.rows]
        rows = _log_rows(recorder.sink.engine)
        recorder.sink.engine.dispose()
    finally:
        control.cache.stop()
        recorder.stop(flush=False)

    flood_seconds = ended - started
    return {
        "flood_wall_seconds": flood_seconds,
        "refused": _rates(spent["refused"], scale.requests),
        "allowed": _rates(spent["allowed"], scale.requests),
        "flush_cpu_during_seconds": sum(f.cpu for f in during),
        "flush_cpu_after_seconds": sum(f.cpu for f in after),
        "flushes_during": [_flush_json(f, started) for f in during],
        "flushes_after": [_flush_json(f, started) for f in after],
        "overflow_events": recorder.overflow_total - overflow_before,
        "rows": rows,
        "rss_start_mb": rss_start / MB,
        "rss_peak_growth_mb": (rss_peak - rss_start) / MB,
        "pair_ratios_cpu": [a[0] / r[0] for r, a in zip(
            spent["refused"].blocks, spent["allowed"].blocks, strict=True)],
    }


def _rates(spent: Spent, requests: int) -> dict[str, float]:
    return {"cpu_seconds": spent.cpu, "wall_seconds": spent.wall,
            "per_second_cpu": requests / spent.cpu, "per_second_wall": requests / spent.wall,
            "us_per_request_cpu": spent.cpu / requests * 1e6}


def _flush_json(flush: Flush, origin: float) -> dict[str, object]:
    return {"at_seconds": flush.started - origin, "wall_seconds": flush.wall,
            "cpu_seconds": flush.cpu, "rows": flush.rows, "by_flusher": flush.by_flusher}


def _log_rows(engine: sa.Engine) -> dict[str, int]:
    log = RequestLogEntry.__table__
    is_overflow = log.c.reason == OVERFLOW
    with engine.connect() as conn:
        row = conn.execute(sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(log.c.count), 0),
            sa.func.count().filter(is_overflow),
            sa.func.coalesce(sa.func.sum(log.c.count).filter(is_overflow), 0),
        )).one()
    total, counted, overflow_rows, overflow_counted = (int(v) for v in row)
    return {"total": total, "refusals_counted": counted, "overflow_rows": overflow_rows,
            "overflow_counted": overflow_counted}


def _rss() -> int:
    """Resident set size of this process now, in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


# -- memory ----------------------------------------------------------------------------------


def _memory_pass(url: str, scale: Scale, refused: list[apps.Environ],
                 allowed: list[apps.Environ]) -> dict[str, object]:
    """The floods again, untimed, on a fresh recorder, under tracemalloc (which traces every
    thread): Python memory over the baseline before the flood.

    The flusher waits an hour here, so the flood fills the in-memory aggregate to its bound;
    one flush then writes all of it, the largest flush there can be. (An allowed flood, a
    fifth as long, is the control: it records nothing.)
    """
    waiting = replace(scale, flush_interval=3600.0)
    floods = (("allowed", allowed[scale.warmup:][:scale.requests // 5]),
              ("refused", refused[scale.warmup:]))
    results = {}
    for kind, environs in floods:
        app, control, recorder = _logged_app(url, waiting)
        serve = apps.serve(app)
        try:
            for environ in allowed[:scale.warmup]:
                serve(environ)
            gc.collect()
            tracemalloc.start()
            baseline = tracemalloc.get_traced_memory()[0]
            for environ in environs:
                serve(environ)
            held, flood_peak = tracemalloc.get_traced_memory()
            pending = recorder.pending_keys
            tracemalloc.reset_peak()
            recorder.flush()
            gc.collect()
            after, flush_peak = tracemalloc.get_traced_memory()
            results[kind] = {
                "requests": len(environs),
                "peak_during_flood_mb": (flood_peak - baseline) / MB,
                "held_at_end_of_flood_mb": (held - baseline) / MB,
                "pending_keys_at_end_of_flood": pending,
                "peak_during_flush_mb": (flush_peak - baseline) / MB,
                "held_after_flush_mb": (after - baseline) / MB,
            }
        finally:
            tracemalloc.stop()
            control.cache.stop()
            recorder.stop(flush=False)
            recorder.sink.engine.dispose()
    return results


# -- the report ------------------------------------------------------------------------------


def _scale_json(scale: Scale) -> dict[str, object]:
    return {"requests": scale.requests, "block": scale.block, "max_keys": scale.max_keys,
            "flush_interval": scale.flush_interval, "warmup": scale.warmup}


def _print_report(results: dict, scale: Scale) -> None:
    n = scale.requests
    refused, allowed = results["refused"], results["allowed"]
    flush_during = results["flush_cpu_during_seconds"]
    flush_after = results["flush_cpu_after_seconds"]
    charged = refused["cpu_seconds"] + flush_during + flush_after
    cpu_ratio = refused["per_second_cpu"] / allowed["per_second_cpu"]
    charged_rate = n / charged
    charged_ratio = charged_rate / allowed["per_second_cpu"]
    wall_ratio = refused["per_second_wall"] / allowed["per_second_wall"]
    results["ratio_request_path"] = cpu_ratio
    results["ratio_with_flushes"] = charged_ratio
    results["refused_per_second_with_flushes"] = charged_rate

    print("== flood: refused requests from distinct origins, with the request log recording ==")
    print(f"GET {apps.PATH} under one rule ({apps.RULE_PATH}, 3 origins); {count(n)} requests "
          f"from {count(n)} distinct origins https://<12 random chars>.{REFUSED_DOMAIN} and "
          f"{count(n)} from the 3 allowed origins, in alternating blocks of {count(scale.block)}")
    print(f"listeners: DecisionCounters.observe (with its tally of allowed requests) and "
          f"RefusalRecorder.record, as "
          f"RequestLog attaches them; recorder on a migrated SQLite file, "
          f"flush_interval={scale.flush_interval:g} s, max_keys={count(scale.max_keys)}")
    print("CPU: CPU seconds of the bench thread (the request path); flushes are timed in "
          "the recorder's thread. wall: includes waiting for the GIL while the flusher runs")
    print()
    rows = [
        ["allowed", _per_s(allowed["per_second_cpu"]), us(allowed["us_per_request_cpu"]),
         _per_s(allowed["per_second_wall"]), "1.00"],
        ["refused, request path", _per_s(refused["per_second_cpu"]),
         us(refused["us_per_request_cpu"]), _per_s(refused["per_second_wall"]),
         ratio(cpu_ratio)],
        ["refused + every flush", _per_s(charged_rate), us(charged / n * 1e6), "",
         ratio(charged_ratio)],
    ]
    print(table(["requests", "req/s (CPU)", "µs/req (CPU)", "req/s (wall)", "÷ allowed (CPU)"],
                rows))
    pair = sorted(results["pair_ratios_cpu"])
    print(f"  refused ÷ allowed, per pair of blocks (request path CPU): median "
          f"{ratio(pair[len(pair) // 2])}, range {ratio(pair[0])}–{ratio(pair[-1])}; "
          f"by wall time: {ratio(wall_ratio)}")
    print()
    during, after = results["flushes_during"], results["flushes_after"]
    writing = [f for f in during if f["rows"]]
    print(f"flushes: the recorder's own thread flushed {_times(len(during))} during the "
          f"{results['flood_wall_seconds']:.1f} s flood (every {scale.flush_interval:g} s; the "
          f"bench never calls flush() during it), {len(writing)} of them with rows to write; "
          f"then the rest was flushed after the flood")
    flush_rows = [
        [f"{f['at_seconds']:.1f} s" if f["at_seconds"] < results["flood_wall_seconds"]
         else f"after ({'flusher' if f['by_flusher'] else 'final flush()'})",
         count(f["rows"]), f"{f['wall_seconds'] * 1e3:,.0f}", f"{f['cpu_seconds'] * 1e3:,.0f}",
         f"{f['cpu_seconds'] / f['rows'] * 1e6:,.0f}"]
        for f in writing + after]
    if flush_rows:
        print(table(["started", "rows upserted", "wall ms", "CPU ms", "CPU µs/row"],
                    flush_rows))
    print(f"  flush CPU: {flush_during:.2f} s during the flood + {flush_after:.2f} s after it "
          f"= {(flush_during + flush_after) / n * 1e6:.1f} µs per refused request")
    print()
    log = results["rows"]
    print(f"database after the final flush: {count(log['total'])} request_log rows "
          f"({count(log['total'] - log['overflow_rows'])} per-origin rows, "
          f"{count(log['overflow_rows'])} overflow row) counting {count(log['refusals_counted'])} "
          f"refusals, {count(log['overflow_counted'])} of them in the overflow row; "
          f"recorder overflow counter: {count(results['overflow_events'])}")
    memory = results["memory"]
    print()
    print("memory (second pass, untimed, under tracemalloc: Python allocations of every thread "
          "over the baseline before the flood; the flusher held back until the flood ends, "
          "then one flush):")
    memory_rows = [[kind, count(m["requests"]), f"{m['peak_during_flood_mb']:.1f}",
                    f"{m['held_at_end_of_flood_mb']:.1f}", count(m["pending_keys_at_end_of_flood"]),
                    f"{m['peak_during_flush_mb']:.1f}", f"{m['held_after_flush_mb']:.1f}"]
                   for kind, m in memory.items()]
    print(table(["flood", "requests", "peak MB", "held at end MB", "pending keys",
                 "peak in flush MB", "after flush MB"], memory_rows))
    print(f"  RSS during the timed flood: {results['rss_start_mb']:.0f} MB at the start, peak "
          f"+{results['rss_peak_growth_mb']:.1f} MB (sampled after each block)")
    print()
    print("targets:")
    print(f"  refused ≥ {MIN_RATIO:.0%} of the allowed rate, request path (CPU): "
          f"{ratio(cpu_ratio)} → {verdict(cpu_ratio >= MIN_RATIO)}")
    print(f"  refused ≥ {MIN_RATIO:.0%} of the allowed rate, flushes charged to refusals "
          f"(CPU): {ratio(charged_ratio)} → {verdict(charged_ratio >= MIN_RATIO)}")
    accounted = log["refusals_counted"] == n
    print(f"  every refusal counted in the log (rows + overflow = {count(n)}): "
          f"{count(log['refusals_counted'])} → {verdict(accounted)}")


def _times(number: int) -> str:
    return "once" if number == 1 else f"{number} times"


def _per_s(value: float) -> str:
    return f"{value:,.0f}"
