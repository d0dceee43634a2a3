"""The middleware's kept answers and its listeners' interests.

A request that repeats one seen before (same path, Origin, method, Cookie or not, and for a
preflight the same request headers) gets its decision from a table of the snapshot instead of
:func:`~cors_control.decide`; these tests check that a kept answer is always the one
:func:`~cors_control.decide` gives, and that nothing whose answer depends on more than that
(the clock, a tenant, report-only rules and drafts watching the path) is kept. Listeners that
only want something to record are never called for allowed requests; a tally counts those in
batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from flask import Flask
from werkzeug.datastructures import Headers

from cors_control import CorsControl, decide
from cors_control import decision as decision_module
from cors_control.decision import ALLOWED, ORIGIN_NOT_ALLOWED, Decision
from cors_control.snapshot import OriginEntry, RuleSpec
from cors_control.vocabulary import REPORT_ONLY, TENANT_FROM_HEADER

APP = "https://app.example.com"
STRANGER = "https://stranger.example.net"
PATH = "/api/orders"


@dataclass
class MemoryPolicy:
    """A policy source held in memory (one version, never changing)."""

    rules: list[RuleSpec]
    tenants: list[str] = field(default_factory=list)

    def current_version(self) -> int:
        return 1

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        return 1, list(self.rules), list(self.tenants)


@pytest.fixture
def serve():
    """``serve(*rules, tenants=())``: a Flask app under the engine with those rules, and its
    :class:`CorsControl`; the poller is stopped after the test."""
    controls: list[CorsControl] = []

    def make(*rules: RuleSpec, tenants: tuple[str, ...] = ()) -> tuple[Flask, CorsControl]:
        app = Flask(__name__)

        @app.route(PATH, methods=["GET", "POST", "PUT", "DELETE"])
        def orders() -> dict[str, object]:
            return {"orders": []}

        control = CorsControl(app, source=MemoryPolicy(list(rules), list(tenants)))
        controls.append(control)
        return app, control

    yield make
    for control in controls:
        control.close()


def _send(app: Flask, method: str, headers: dict[str, str]):
    response = app.test_client(use_cookies=False).open(PATH, method=method, headers=headers)
    cors = [(k, v) for k, v in response.headers
            if k.lower().startswith("access-control-") or k == "Vary"]
    return response.status_code, cors


REQUESTS = [
    ("GET", {"Origin": APP}),
    ("GET", {"Origin": STRANGER}),
    ("GET", {}),
    ("DELETE", {"Origin": APP}),
    ("POST", {"Origin": APP, "Cookie": "session=1"}),
    ("OPTIONS", {"Origin": APP, "Access-Control-Request-Method": "PUT",
                 "Access-Control-Request-Headers": "content-type"}),
    ("OPTIONS", {"Origin": APP, "Access-Control-Request-Method": "PUT",
                 "Access-Control-Request-Headers": "x-secret"}),
    ("OPTIONS", {"Origin": APP, "Access-Control-Request-Method": "PUT",
                 "Access-Control-Request-Private-Network": "true"}),
    ("OPTIONS", {"Origin": STRANGER, "Access-Control-Request-Method": "PUT"}),
    ("OPTIONS", {"Origin": APP}),
]


def test_a_repeated_request_gets_the_same_answer_as_the_first_and_as_decide(serve):
    rule = RuleSpec("/api/*", origins=(OriginEntry(APP),), methods=("GET", "POST", "PUT"),
                    allow_headers=("content-type",), max_age=600)
    app, control = serve(rule)
    first = [_send(app, method, headers) for method, headers in REQUESTS]
    snapshot = control.cache.snapshot
    assert snapshot is not None
    assert snapshot.granted and snapshot.refused  # the answers were kept
    again = [_send(app, method, headers) for method, headers in REQUESTS]
    assert again == first
    for (method, headers), (status, cors) in zip(REQUESTS, again, strict=True):
        decided = decide(snapshot, method, PATH, Headers(headers))
        if decided.preflight:
            assert status == (204 if decided.allowed else 403)
            assert cors == list(decided.headers)
        else:
            assert status == 200
            assert cors == list(decided.headers)


def test_an_origin_is_refused_once_it_expires_though_it_was_allowed_before(serve):
    expires = time.time() + 0.5
    app, control = serve(RuleSpec("/api/*", origins=(OriginEntry(APP, expires_at=expires),
                                                     OriginEntry("https://other.example"))))
    status, cors = _send(app, "GET", {"Origin": APP})
    assert ("Access-Control-Allow-Origin", APP) in cors
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    status, cors = _send(app, "GET", {"Origin": APP})
    assert cors == [("Vary", "Origin")]
    snapshot = control.cache.snapshot
    assert snapshot is not None and not snapshot.granted  # a clock-bound rule keeps nothing


def test_the_same_origin_is_answered_per_tenant_on_a_tenant_selecting_rule(serve):
    rule = RuleSpec("/api/*", origins=(OriginEntry(APP, tenant="acme"),),
                    tenant_source=TENANT_FROM_HEADER, tenant_key="X-Tenant")
    app, _control = serve(rule, tenants=("acme", "globex"))
    for _ in range(2):
        _status, acme = _send(app, "GET", {"Origin": APP, "X-Tenant": "acme"})
        _status, globex = _send(app, "GET", {"Origin": APP, "X-Tenant": "globex"})
        assert ("Access-Control-Allow-Origin", APP) in acme
        assert not any(name == "Access-Control-Allow-Origin" for name, _ in globex)


def test_report_only_findings_reach_the_listeners_on_every_repeat(serve):
    app, control = serve(
        RuleSpec("/api/*", origins=(OriginEntry(APP),)),
        RuleSpec("/api/orders", origins=(OriginEntry("https://only.example"),),
                 mode=REPORT_ONLY))
    heard: list[Decision] = []
    control.add_listener(lambda decision, _request: heard.append(decision),
                         every_decision=False)
    for _ in range(3):
        _send(app, "GET", {"Origin": APP})
    assert [(d.reason, [s.reason for s in d.shadows]) for d in heard] == \
        [(ALLOWED, [ORIGIN_NOT_ALLOWED])] * 3


def test_allowed_requests_skip_finding_listeners_and_reach_the_tally_in_batches(serve):
    app, control = serve(RuleSpec("/api/*", origins=(OriginEntry(APP),)))
    findings: list[Decision] = []
    every: list[Decision] = []
    tallied: list[Decision] = []
    control.add_listener(lambda decision, _request: findings.append(decision),
                         every_decision=False)
    control.add_listener(lambda decision, _request: every.append(decision))
    control.add_tally(tallied.extend)
    control.cache.get()  # loads the policy; then no poller flushes behind the test's back
    control.cache.stop()
    for origin in (APP, APP, STRANGER, APP):
        _send(app, "GET", {"Origin": origin})
    _send(app, "GET", {})
    assert [d.reason for d in findings] == [ORIGIN_NOT_ALLOWED]
    assert len(every) == 5
    assert tallied == []  # nothing on the request's thread
    control.flush_tallies()
    assert [d.reason for d in tallied] == [ALLOWED, ALLOWED, ALLOWED, "no-origin"]
    control.flush_tallies()
    assert len(tallied) == 4  # each decision handed over once


def test_a_flood_of_refused_origins_does_not_crowd_out_the_allowed_answers(
        serve, monkeypatch):
    monkeypatch.setattr(decision_module, "ANSWER_LIMIT", 5)
    app, control = serve(RuleSpec("/api/*", origins=(OriginEntry(APP),)))
    for number in range(20):
        _send(app, "GET", {"Origin": f"https://flood{number}.example"})
    _status, cors = _send(app, "GET", {"Origin": APP})
    assert ("Access-Control-Allow-Origin", APP) in cors
    snapshot = control.cache.snapshot
    assert snapshot is not None
    assert len(snapshot.refused) == 5
    assert list(snapshot.granted) == [(PATH, APP, "GET", False)]
    # Past the bound a refused origin is still decided, only not kept.
    _status, cors = _send(app, "GET", {"Origin": "https://flood99.example"})
    assert cors == [("Vary", "Origin")]


def test_answers_to_requests_with_long_keys_are_decided_but_not_kept(serve):
    """The path, the Origin and a preflight's headers are the client's to choose: answers are
    kept only for keys of ordinary length, so a few thousand long requests cannot make each
    worker keep megabytes."""
    app, control = serve(RuleSpec("/api/*", origins=(OriginEntry(APP),),
                                  allow_headers=("content-type",)))
    long_headers = ", ".join(f"x-header-{number}" for number in range(200))
    _status, cors = _send(app, "OPTIONS", {"Origin": APP, "Access-Control-Request-Method": "PUT",
                                           "Access-Control-Request-Headers": long_headers})
    assert ("Access-Control-Allow-Origin", APP) not in cors
    long_origin = "https://" + "a" * 1100 + ".example"
    _send(app, "GET", {"Origin": long_origin})
    snapshot = control.cache.snapshot
    assert snapshot is not None
    assert snapshot.refused == {} and snapshot.granted == {}
    _status, cors = _send(app, "GET", {"Origin": APP})
    assert ("Access-Control-Allow-Origin", APP) in cors
    assert list(snapshot.granted) == [(PATH, APP, "GET", False)]
