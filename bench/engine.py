"""Section ``engine``: what the CORS engine costs per request, against flask-cors.

One GET and one preflight through the full Flask stack, at 3 to 100,000 allowed origins, for
the bare app (baseline), the app under flask-cors, and the app under the engine (allowed and
refused origin). Beside them, in the same rounds, two references for a GET: a Flask hook and
a WSGI middleware that only add the two headers of an allowed GET (the floor of each way of
adding CORS headers), and the engine with the admin application's listeners attached. Then
:func:`~cors_control.decide` alone, and compiling a 100,000-origin policy.

The engine answers a preflight itself, before Flask runs: its figure is the whole request.

The engine keeps the answer to a request it has seen (same path, Origin, method, cookie and,
for a preflight, the same request headers; see ``decision.keep_answer``), and the timed
request repeats: most cases measure that kept answer. The *first-seen* cases empty the kept
answers before each request (two dict clears, tens of nanoseconds), so they measure a
request the engine decides from its rules: a path or origin it has not seen yet, or a rule
that selects a tenant or has expiring origins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from werkzeug.datastructures import EnvironHeaders

from cors_control import CorsControl, PolicySnapshot, compile_policy, decide

from . import apps
from .harness import (
    Budget,
    Case,
    Samples,
    frozen_heap,
    measure,
    paired_difference,
    paired_ratio,
    time_once,
)
from .report import count, ratio, signed_us, table, us, verdict

SIZES = (3, 1_000, 10_000, 100_000)
DECIDE_SIZES = (SIZES[0], SIZES[-1])
MAX_OVERHEAD_US = 5.0  # over the bare app, allowed or refused GET
MAX_PREFLIGHT_US = 6.0  # the whole preflight request, answered by the engine
MAX_SHARE_OF_FLASK_CORS = 1 / 3
MAX_DRIFT = 0.15

ACAO = "Access-Control-Allow-Origin"


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of request, and the status each variant must answer it with."""

    name: str
    label: str
    environ: Callable[[str], apps.Environ]
    plain_status: int  # bare app and flask-cors
    engine_status: int
    refused_status: int


KINDS = (
    Kind("GET", f"GET {apps.PATH}", apps.get_environ, 200, 200, 200),
    Kind("preflight", f"OPTIONS {apps.PATH} (preflight: PUT, content-type)",
         apps.preflight_environ, 200, 204, 403),
)


def requested_origin(origins: list[str]) -> str:
    """The last allowed origin: flask-cors compares entries in order, so this is its worst
    case among allowed origins; the engine looks origins up by hash, so the position does
    not matter to it."""
    return origins[-1]


def run(budget: Budget) -> dict[str, object]:
    origins = {size: apps.allowed_origins(size) for size in SIZES}
    baseline = apps.bare_app()
    flask_cors = {size: apps.flask_cors_app(origins[size]) for size in SIZES}
    engines = {size: apps.engine_app(origins[size]) for size in SIZES}
    listened = apps.listened_engine_app(origins[SIZES[0]])
    try:
        request_cases = _request_cases(baseline, flask_cors, engines, origins)
        first = requested_origin(origins[SIZES[0]])
        request_cases.append(_checked_case("GET/engine-listened", listened[0],
                                           apps.get_environ(first), 200, first))
        snapshots = {size: engines[size][1].cache.snapshot for size in DECIDE_SIZES}
        decide_cases = _decide_cases(snapshots, origins)
        with frozen_heap():
            requests = measure(request_cases, budget)
            decisions = measure(decide_cases, budget)
    finally:
        for _, control in [*engines.values(), listened]:
            control.cache.stop()
    compile_seconds = _time_compile(origins[SIZES[-1]], budget.repeats)

    results = _summarise(requests, decisions, compile_seconds)
    _print_report(results, origins, budget)
    return results


def _request_cases(
    baseline: Flask,
    flask_cors: dict[int, Flask],
    engines: dict[int, tuple[Flask, CorsControl]],
    origins: dict[int, list[str]],
) -> list[Case]:
    cases: list[Case] = []
    for kind in KINDS:
        first = requested_origin(origins[SIZES[0]])
        cases.append(_checked_case(f"{kind.name}/baseline", baseline, kind.environ(first),
                                   kind.plain_status, None))
        if kind.name == "GET":
            cases.append(_checked_case("GET/hook-floor", apps.hook_floor_app(first),
                                       kind.environ(first), kind.plain_status, first))
            cases.append(_checked_case("GET/middleware-floor", apps.middleware_floor_app(first),
                                       kind.environ(first), kind.plain_status, first))
        for size in SIZES:
            allowed = requested_origin(origins[size])
            engine_app = engines[size][0]
            cases += [
                _checked_case(f"{kind.name}/flask-cors/{size}", flask_cors[size],
                              kind.environ(allowed), kind.plain_status, allowed),
                _checked_case(f"{kind.name}/engine/{size}", engine_app,
                              kind.environ(allowed), kind.engine_status, allowed),
                _checked_case(f"{kind.name}/engine-refused/{size}", engine_app,
                              kind.environ(apps.REFUSED_ORIGIN), kind.refused_status, None),
            ]
            if size in DECIDE_SIZES:
                control = engines[size][1]
                cases += [
                    _first_seen_case(f"{kind.name}/engine-first/{size}", engine_app, control,
                                     kind.environ(allowed), kind.engine_status, allowed),
                    _first_seen_case(f"{kind.name}/engine-refused-first/{size}", engine_app,
                                     control, kind.environ(apps.REFUSED_ORIGIN),
                                     kind.refused_status, None),
                ]
    return cases


def _first_seen_case(name: str, app: Flask, control: CorsControl, environ: apps.Environ,
                     status: int, acao: str | None) -> Case:
    """The request as the engine first sees it: its kept answers emptied before each call."""
    checked = _checked_case(name, app, environ, status, acao)
    snapshot = control.cache.snapshot
    assert snapshot is not None
    granted, refused = snapshot.granted, snapshot.refused

    def call() -> None:
        granted.clear()
        refused.clear()
        checked.call()

    return Case(name, call)


def _checked_case(
    name: str, app: Flask, environ: apps.Environ, status: int, acao: str | None
) -> Case:
    """A timed request, once checked to get the answer the variant is meant to give."""
    got_status, headers = apps.probe(app, environ)
    if got_status != status or headers.get(ACAO) != acao:
        raise RuntimeError(
            f"{name}: expected status {status} with {ACAO} {acao!r}, got {got_status} with "
            f"{headers.get(ACAO)!r}; the variant is not set up as the benchmark assumes"
        )
    return Case(name, apps.request_call(app, environ))


def _decide_cases(
    snapshots: dict[int, PolicySnapshot], origins: dict[int, list[str]]
) -> list[Case]:
    """decide() as the hooks call it: on werkzeug's view of a WSGI environ's headers."""
    cases = []
    for size, snapshot in snapshots.items():
        allowed = requested_origin(origins[size])
        for kind in KINDS:
            for label, origin in (("", allowed), ("-refused", apps.REFUSED_ORIGIN)):
                environ = kind.environ(origin)
                method, headers = environ["REQUEST_METHOD"], EnvironHeaders(environ)
                cases.append(Case(
                    f"decide/{kind.name}{label}/{size}",
                    lambda s=snapshot, m=method, h=headers: decide(s, m, apps.PATH, h),
                ))
    return cases


def _time_compile(origins: list[str], repeats: int) -> list[float]:
    rules = apps.StaticSource.for_origins(origins).rules
    return [time_once(lambda: compile_policy(1, rules)) for _ in range(repeats)]


def _summarise(
    requests: dict[str, Samples], decisions: dict[str, Samples], compile_seconds: list[float]
) -> dict[str, object]:
    by_kind: dict[str, object] = {}
    for kind in KINDS:
        base = requests[f"{kind.name}/baseline"]
        rows = {}
        for size in SIZES:
            fc = requests[f"{kind.name}/flask-cors/{size}"]
            engine = requests[f"{kind.name}/engine/{size}"]
            refused = requests[f"{kind.name}/engine-refused/{size}"]
            fc_over = paired_difference(fc, base)
            engine_over = paired_difference(engine, base)
            rows[size] = {
                "flask_cors_us": fc.median,
                "flask_cors_overhead_us": fc_over,
                "engine_us": engine.median,
                "engine_overhead_us": engine_over,
                "engine_refused_us": refused.median,
                "engine_refused_overhead_us": paired_difference(refused, base),
                "engine_share_of_flask_cors_overhead": _share(engine_over, fc_over),
            }
        first, last = SIZES[0], SIZES[-1]
        by_kind[kind.name] = {
            "baseline_us": base.median,
            "sizes": rows,
            "engine_drift": paired_ratio(requests[f"{kind.name}/engine/{last}"],
                                         requests[f"{kind.name}/engine/{first}"]),
            "engine_refused_drift": paired_ratio(
                requests[f"{kind.name}/engine-refused/{last}"],
                requests[f"{kind.name}/engine-refused/{first}"]),
        }
    for kind in KINDS:
        base = requests[f"{kind.name}/baseline"]
        figures = by_kind[kind.name]
        assert isinstance(figures, dict)
        figures["first_seen"] = {
            size: {
                "engine_us": requests[f"{kind.name}/engine-first/{size}"].median,
                "engine_overhead_us": paired_difference(
                    requests[f"{kind.name}/engine-first/{size}"], base),
                "engine_refused_us": requests[f"{kind.name}/engine-refused-first/{size}"].median,
                "engine_refused_overhead_us": paired_difference(
                    requests[f"{kind.name}/engine-refused-first/{size}"], base),
            }
            for size in DECIDE_SIZES
        }
    get = by_kind["GET"]
    base = requests["GET/baseline"]
    floor = requests["GET/middleware-floor"]
    first = SIZES[0]
    get["hook_floor_overhead_us"] = paired_difference(requests["GET/hook-floor"], base)
    get["middleware_floor_overhead_us"] = paired_difference(floor, base)
    # What the engine costs beyond any middleware adding the same headers, same rounds.
    get["engine_over_middleware_floor_us"] = paired_difference(
        requests[f"GET/engine/{first}"], floor)
    get["engine_refused_over_middleware_floor_us"] = paired_difference(
        requests[f"GET/engine-refused/{first}"], floor)
    get["engine_listened_overhead_us"] = paired_difference(requests["GET/engine-listened"],
                                                           base)
    get["listeners_cost_us"] = paired_difference(requests["GET/engine-listened"],
                                                 requests[f"GET/engine/{first}"])
    return {
        "requests": by_kind,
        "decide_us": {name.removeprefix("decide/"): s.median for name, s in decisions.items()},
        "compile_seconds": {"origins": SIZES[-1], "runs": compile_seconds},
        "samples": {name: s.as_json() for name, s in {**requests, **decisions}.items()},
    }


def _share(engine_over: float, flask_cors_over: float) -> float:
    """Engine overhead as a share of flask-cors's; 0 when the engine adds nothing."""
    if flask_cors_over <= 0:
        return math.nan
    return max(engine_over, 0.0) / flask_cors_over


def _print_report(
    results: dict[str, object], origins: dict[int, list[str]], budget: Budget
) -> None:
    first, last = SIZES[0], SIZES[-1]
    print("== engine: CORS cost per request, in-process through app.wsgi_app ==")
    print(f"requested origin: the last of the allowed list ({origins[first][-1]} at "
          f"{count(first)}, {origins[last][-1]} at {count(last)}): flask-cors's worst case "
          "among allowed origins, position-blind for the engine")
    print(f"refused origin: {apps.REFUSED_ORIGIN}")
    print(f"µs/request: CPU time of the bench thread, median of {budget.rounds} per-round means; "
          f"cases shuffled round-robin, ~{budget.time_box * 1000:g} ms per case per round")
    print("+over: median over rounds of (variant − baseline) measured in the same round")
    for kind in KINDS:
        figures = results["requests"][kind.name]
        print()
        print(f"{kind.label}: baseline (no CORS) {us(figures['baseline_us'])} µs/request")
        rows = []
        for size in SIZES:
            row = figures["sizes"][size]
            rows.append([
                count(size),
                us(row["flask_cors_us"]), signed_us(row["flask_cors_overhead_us"]),
                us(row["engine_us"]), signed_us(row["engine_overhead_us"]),
                us(row["engine_refused_us"]), signed_us(row["engine_refused_overhead_us"]),
                ratio(row["engine_share_of_flask_cors_overhead"]),
            ])
        print(table(["origins", "flask-cors", "+over", "engine", "+over", "engine refused",
                     "+over", "engine/flask-cors over"], rows))
        print(f"  engine time at {count(last)} / at {count(first)} origins: "
              f"{ratio(figures['engine_drift'])}× (refused origin: "
              f"{ratio(figures['engine_refused_drift'])}×)")
        seen = figures["first_seen"]
        if kind.name == "GET":
            print("  first seen (no kept answer: decided from the rules): "
                  + "; ".join(f"{count(size)} origins allowed "
                              f"{signed_us(seen[size]['engine_overhead_us'])} µs, refused "
                              f"{signed_us(seen[size]['engine_refused_overhead_us'])} µs"
                              for size in DECIDE_SIZES))
        else:
            print("  first seen (no kept answer), the whole request: "
                  + "; ".join(f"{count(size)} origins allowed {us(seen[size]['engine_us'])} "
                              f"µs, refused {us(seen[size]['engine_refused_us'])} µs"
                              for size in DECIDE_SIZES))
        if "hook_floor_overhead_us" in figures:
            print(f"  reference: a no-op before_request plus an after_request that only adds "
                  f"ACAO and Vary: {signed_us(figures['hook_floor_overhead_us'])} µs")
            print(f"  reference: a WSGI middleware that wraps start_response and only adds "
                  f"ACAO and Vary: {signed_us(figures['middleware_floor_overhead_us'])} µs; "
                  f"the engine at {count(first)} origins over it: allowed "
                  f"{signed_us(figures['engine_over_middleware_floor_us'])} µs, refused "
                  f"{signed_us(figures['engine_refused_over_middleware_floor_us'])} µs")
            print(f"  the engine with the admin app's listeners (metrics counters, refusal "
                  f"recorder) at {count(first)} origins: "
                  f"{signed_us(figures['engine_listened_overhead_us'])} µs over the bare app, "
                  f"{signed_us(figures['listeners_cost_us'])} µs over the engine alone")
        else:
            print(f"  engine: the whole request, answered before Flask runs: "
                  f"{us(figures['sizes'][first]['engine_us'])} µs allowed, "
                  f"{us(figures['sizes'][first]['engine_refused_us'])} µs refused")

    print()
    print("decide() alone (no Flask; headers as werkzeug's EnvironHeaders), µs/call:")
    decide_us = results["decide_us"]
    rows = [[label] + [f"{decide_us[f'{label}/{size}']:.2f}" for size in DECIDE_SIZES]
            for label in ("GET", "GET-refused", "preflight", "preflight-refused")]
    print(table(["request"] + [f"{count(size)} origins" for size in DECIDE_SIZES], rows))

    runs = results["compile_seconds"]["runs"]
    best = min(runs)
    print()
    print(f"compile_policy with {count(last)} origins (off the request path): "
          f"{best:.2f} s, best of {len(runs)} ({best / last * 1e6:.1f} µs per origin)")

    print()
    print("targets:")
    for line in _target_lines(results["requests"]):
        print(f"  {line}")
    spreads = sorted(s["relative_iqr"] for s in results["samples"].values()
                     if not math.isnan(s["relative_iqr"]))
    if spreads:
        print(f"noise: interquartile range of a case's per-round means / its median: "
              f"typical {spreads[len(spreads) // 2]:.0%}, worst {spreads[-1]:.0%}")


def _target_lines(requests: dict[str, dict]) -> list[str]:
    first, last = SIZES[0], SIZES[-1]
    lines = []
    for kind in KINDS:
        figures = requests[kind.name]
        sizes = figures["sizes"]
        if kind.name == "GET":
            worst_allowed = max(sizes[s]["engine_overhead_us"] for s in SIZES)
            worst_refused = max(sizes[s]["engine_refused_overhead_us"] for s in SIZES)
            worst = max(worst_allowed, worst_refused)
            lines.append(
                f"{kind.name}: engine adds ≤ {MAX_OVERHEAD_US:g} µs: worst {signed_us(worst)} "
                f"µs = {worst / figures['baseline_us']:.0%} of the bare request (allowed "
                f"{signed_us(worst_allowed)}, refused {signed_us(worst_refused)}; a "
                f"middleware only adding two headers "
                f"{signed_us(figures['middleware_floor_overhead_us'])}) "
                f"→ {verdict(worst <= MAX_OVERHEAD_US)}"
            )
            seen = figures["first_seen"]
            worst_seen = max(max(seen[s]["engine_overhead_us"],
                                 seen[s]["engine_refused_overhead_us"]) for s in seen)
            lines.append(
                f"{kind.name} first seen (no kept answer): engine adds ≤ {MAX_OVERHEAD_US:g} "
                f"µs: worst {signed_us(worst_seen)} µs → {verdict(worst_seen <= MAX_OVERHEAD_US)}"
            )
        else:
            worst = max(max(sizes[s]["engine_us"], sizes[s]["engine_refused_us"])
                        for s in SIZES)
            lines.append(
                f"{kind.name}: the whole request ≤ {MAX_PREFLIGHT_US:g} µs (answered by the "
                f"engine): worst {us(worst)} µs → {verdict(worst <= MAX_PREFLIGHT_US)}"
            )
            seen = figures["first_seen"]
            worst_seen = max(max(seen[s]["engine_us"], seen[s]["engine_refused_us"])
                             for s in seen)
            lines.append(
                f"{kind.name} first seen (no kept answer): the whole request ≤ "
                f"{MAX_PREFLIGHT_US:g} µs: worst {us(worst_seen)} µs → "
                f"{verdict(worst_seen <= MAX_PREFLIGHT_US)}"
            )
        share = sizes[first]["engine_share_of_flask_cors_overhead"]
        share_ok = not math.isnan(share) and share <= MAX_SHARE_OF_FLASK_CORS
        lines.append(
            f"{kind.name}: engine overhead ≤ 1/3 of flask-cors's at {count(first)} origins: "
            f"{ratio(share)} → {verdict(share_ok)}"
        )
        drift = figures["engine_drift"]
        lines.append(
            f"{kind.name}: engine within {MAX_DRIFT:.0%} from {count(first)} to "
            f"{count(last)} origins: {ratio(drift)}× → {verdict(abs(drift - 1) <= MAX_DRIFT)}"
        )
    return lines
