"""Section ``tenants``: the engine's cost per request with 10,000 tenants behind one rule.

One rule, ``/api/t/*/orders``, on the Flask route ``/api/t/<tenant>/orders``, in three forms:
a plain rule with 3 origins (the reference), a tenant-selecting rule that reads the tenant
from the ``X-Tenant`` header, and one that reads it from the route's ``tenant`` variable
(which makes the engine match the URL against Flask's map). Each tenant rule holds 10,000
tenants of 10 origins each: 100,000 origins.

Every case serves a stream of requests for all the tenants, in a shuffled order, each from
one of its tenant's origins, rather than one request repeated: the engine's per-rule memo of
decisions holds 4,096 of them, so most of a stream of many tenants is decided afresh.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from flask import Flask
from werkzeug.test import EnvironBuilder

from cors_control import CorsControl, OriginEntry, PolicySnapshot, RuleSpec, compile_policy, decide
from cors_control.decision import MEMO_LIMIT
from cors_control.extension import _EnvironHeaderView

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

RULE_PATH = "/api/t/*/orders"
ROUTE = "/api/t/<tenant>/orders"
HEADER = "X-Tenant"
HEADER_KEY = "HTTP_X_TENANT"  # as the WSGI environ spells it
VIEW_ARG = "tenant"
ORIGINS_PER_TENANT = 10
PLAIN_ORIGINS = 3
MAX_DRIFT = 0.15
ACAO = "Access-Control-Allow-Origin"


@dataclass(frozen=True, slots=True)
class Scale:
    tenants: int


FULL = Scale(tenants=10_000)
SMOKE = Scale(tenants=300)


@dataclass(frozen=True, slots=True)
class TenantSource(apps.StaticSource):
    """A policy held in memory with its tenants, as the database source loads it."""

    tenants: tuple[str, ...] = ()

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        return self.version, list(self.rules), list(self.tenants)


@dataclass(frozen=True, slots=True)
class Tenant:
    slug: str
    origins: tuple[str, ...]


def make_tenants(number: int) -> list[Tenant]:
    return [Tenant(f"customer-{i:05d}", tuple(
        f"https://app{j}.customer-{i:05d}.example" for j in range(ORIGINS_PER_TENANT)))
        for i in range(number)]


def tenant_rule(tenants: Sequence[Tenant], source: str, key: str) -> RuleSpec:
    return RuleSpec(path=RULE_PATH, tenant_source=source, tenant_key=key, origins=tuple(
        OriginEntry(origin, tenant=t.slug) for t in tenants for origin in t.origins))


def plain_rule() -> RuleSpec:
    return RuleSpec(path=RULE_PATH, origins=tuple(
        OriginEntry(o) for o in apps.allowed_origins(PLAIN_ORIGINS)))


def bare_tenant_app() -> Flask:
    app = Flask(__name__)

    @app.route(ROUTE, methods=["GET", "PUT"])
    def orders(tenant: str) -> dict[str, object]:
        return {"orders": [{"id": 1, "item": "coffee"}, {"id": 2, "item": "tea"}]}

    return app


def engine_app(rule: RuleSpec, tenants: Sequence[Tenant]) -> tuple[Flask, CorsControl]:
    app = bare_tenant_app()
    source = TenantSource(rules=(rule,), tenants=tuple(t.slug for t in tenants))
    control = CorsControl(app, source=source)
    control.cache.get()
    return app, control


def environ(tenant: Tenant, origin: str) -> apps.Environ:
    return EnvironBuilder(path=f"/api/t/{tenant.slug}/orders", method="GET",
                          headers={"Origin": origin, HEADER: tenant.slug}).get_environ()


@dataclass(frozen=True, slots=True)
class Streams:
    """The request streams, all in the same shuffled order of tenants."""

    plain: list[apps.Environ]  # the 3 plain origins in turn
    plain_refused: list[apps.Environ]
    tenant: list[apps.Environ]  # one of the tenant's own origins
    tenant_refused: list[apps.Environ]  # an origin of the next tenant


def make_streams(tenants: Sequence[Tenant]) -> Streams:
    rng = random.Random(10_000)
    order = list(range(len(tenants)))
    rng.shuffle(order)
    plain = apps.allowed_origins(PLAIN_ORIGINS)
    streams = Streams([], [], [], [])
    for position, index in enumerate(order):
        tenant = tenants[index]
        other = tenants[(index + 1) % len(tenants)]
        streams.plain.append(environ(tenant, plain[position % PLAIN_ORIGINS]))
        streams.plain_refused.append(environ(tenant, apps.REFUSED_ORIGIN))
        streams.tenant.append(environ(tenant, rng.choice(tenant.origins)))
        streams.tenant_refused.append(environ(tenant, rng.choice(other.origins)))
    return streams


def run(budget: Budget) -> dict[str, object]:
    scale = SMOKE if budget.smoke else FULL
    tenants = make_tenants(scale.tenants)
    streams = make_streams(tenants)
    rules = {
        "plain": plain_rule(),
        "header": tenant_rule(tenants, "header", HEADER),
        "view-arg": tenant_rule(tenants, "view-arg", VIEW_ARG),
    }
    engines = {name: engine_app(rule, tenants) for name, rule in rules.items()}
    try:
        cases = _request_cases(bare_tenant_app(), {n: a for n, (a, _) in engines.items()},
                               streams)
        snapshots = {name: control.cache.snapshot for name, (_, control) in engines.items()}
        decide_cases = _decide_cases(snapshots, streams)
        with frozen_heap():
            requests = measure(cases, budget)
            decisions = measure(decide_cases, budget)
    finally:
        for _, control in engines.values():
            control.cache.stop()
    slugs = [t.slug for t in tenants]
    compile_seconds = [time_once(lambda: compile_policy(1, [rules["header"]], slugs))
                       for _ in range(budget.repeats)]
    results = _summarise(requests, decisions, compile_seconds)
    _print_report(results, scale, budget)
    return results


REQUEST_CASES = (
    # name, engine, stream, status, allowed
    ("baseline", None, "plain", True),
    ("plain", "plain", "plain", True),
    ("plain-refused", "plain", "plain_refused", False),
    ("header", "header", "tenant", True),
    ("header-refused", "header", "tenant_refused", False),
    ("view-arg", "view-arg", "tenant", True),
    ("view-arg-refused", "view-arg", "tenant_refused", False),
)


def _request_cases(baseline: Flask, engines: dict[str, Flask], streams: Streams) -> list[Case]:
    cases = []
    for name, engine, stream_name, allowed in REQUEST_CASES:
        app = baseline if engine is None else engines[engine]
        stream = getattr(streams, stream_name)
        for sample in (stream[0], stream[-1]):
            expected = sample["HTTP_ORIGIN"] if allowed and engine is not None else None
            status, headers = apps.probe(app, sample)
            if status != 200 or headers.get(ACAO) != expected:
                raise RuntimeError(f"tenants/{name}: expected 200 with {ACAO} {expected!r}, "
                                   f"got {status} with {headers.get(ACAO)!r}")
        cases.append(Case(name, apps.cycling_call(app, stream)))
    return cases


def _decide_cases(snapshots: dict[str, PolicySnapshot], streams: Streams) -> list[Case]:
    """decide() alone, as the middleware calls it; the view-arg case gets its URL variables
    handed over (the URL matching the middleware does for it is left out here)."""
    cases = []
    for name in ("plain", "header", "view-arg"):
        stream = streams.plain if name == "plain" else streams.tenant
        inputs = [(e["PATH_INFO"], _EnvironHeaderView(e), {VIEW_ARG: e[HEADER_KEY]})
                  for e in stream]
        cases.append(Case(f"decide/{name}", _cycling_decide(snapshots[name], inputs)))
    return cases


def _cycling_decide(snapshot: PolicySnapshot,
                    inputs: list[tuple[str, _EnvironHeaderView, dict[str, str]]]):
    position = 0
    size = len(inputs)

    def call() -> None:
        nonlocal position
        path, headers, args = inputs[position]
        position = position + 1 if position + 1 < size else 0
        decision = decide(snapshot, "GET", path, headers, route_args=args)
        if not decision.allowed:
            raise RuntimeError(f"decide refused {path}: {decision.reason}")

    return call


def _summarise(requests: dict[str, Samples], decisions: dict[str, Samples],
               compile_seconds: list[float]) -> dict[str, object]:
    base = requests["baseline"]
    plain = requests["plain"]
    rows = {}
    for name, engine, _, _ in REQUEST_CASES:
        if engine is None:
            continue
        samples = requests[name]
        reference = requests["plain-refused" if name.endswith("-refused") else "plain"]
        over = paired_difference(samples, base)
        reference_over = paired_difference(reference, base)
        rows[name] = {
            "us": samples.median,
            "overhead_us": over,
            "vs_plain_ratio": paired_ratio(samples, reference),
            "vs_plain_extra_us": paired_difference(samples, reference),
            "overhead_ratio": over / reference_over if reference_over > 0 else float("nan"),
        }
    return {
        "baseline_us": base.median,
        "plain_us": plain.median,
        "cases": rows,
        "decide_us": {name.removeprefix("decide/"): s.median for name, s in decisions.items()},
        "compile_seconds": compile_seconds,
        "samples": {name: s.as_json() for name, s in {**requests, **decisions}.items()},
    }


def _print_report(results: dict, scale: Scale, budget: Budget) -> None:
    origins = scale.tenants * ORIGINS_PER_TENANT
    print("== tenants: per-request cost of a tenant-selecting rule, in-process through "
          "app.wsgi_app ==")
    print(f"route {ROUTE}, one rule {RULE_PATH}: plain ({PLAIN_ORIGINS} origins) or "
          f"tenant-selecting ({count(scale.tenants)} tenants × {ORIGINS_PER_TENANT} origins = "
          f"{count(origins)}), tenant from the {HEADER} header or the '{VIEW_ARG}' view "
          f"argument")
    print(f"each case: a stream of GETs over all {count(scale.tenants)} tenant paths in a "
          f"shuffled order (the engine memoises {count(MEMO_LIMIT)} decisions per rule); "
          f"refused = an origin of another tenant (tenant rules) or {apps.REFUSED_ORIGIN} "
          f"(plain)")
    print(f"µs/request: CPU time of the bench thread, median of {budget.rounds} per-round "
          f"means; +over: paired difference with the bare app (no CORS), "
          f"{us(results['baseline_us'])} µs/request")
    print()
    rows = []
    for name, row in results["cases"].items():
        rows.append([name, us(row["us"]), signed_us(row["overhead_us"]),
                     ratio(row["vs_plain_ratio"]), signed_us(row["vs_plain_extra_us"]),
                     ratio(row["overhead_ratio"])])
    print(table(["rule", "µs/request", "+over", "÷ plain (request)", "− plain µs",
                 "÷ plain (+over)"], rows))
    print("  ÷ plain, − plain: against the plain rule's request of the same outcome "
          "(allowed or refused), paired round by round")
    decide_us = results["decide_us"]
    print()
    print("decide() alone, the same streams (the view-arg case is handed its URL variables), "
          "µs/call: " + ", ".join(f"{name} {value:.2f}" for name, value in decide_us.items()))
    best = min(results["compile_seconds"])
    print(f"compile_policy of the header rule ({count(origins)} origins, "
          f"{count(scale.tenants)} tenants), off the request path: {best:.2f} s, best of "
          f"{len(results['compile_seconds'])}")
    print()
    print("targets:")
    cases = results["cases"]
    for name, label in (("header", "header-selected tenant"),
                        ("view-arg", "view-arg-selected tenant (reported, no target)")):
        row = cases[name]
        within = abs(row["vs_plain_ratio"] - 1) <= MAX_DRIFT
        judged = f"→ {verdict(within)}" if name == "header" else \
            f"(would {'meet' if within else 'miss'})"
        print(f"  {label}: request time within {MAX_DRIFT:.0%} of the 3-origin rule's: "
              f"{ratio(row['vs_plain_ratio'])}× {judged}; engine overhead "
              f"{signed_us(row['overhead_us'])} µs vs {signed_us(cases['plain']['overhead_us'])}"
              f" µs ({ratio(row['overhead_ratio'])}×)")
