"""The simulator tells the truth: for every request of a table, the status and the CORS
headers it predicts are those the engine sends over HTTP (the app's WSGI stack, middleware
and views included), tenants of the three sources, preflights, credentials and private
network access included."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from app.services.access import Actor
from app.services.policy import import_policy
from app.services.simulator import Answer, Simulation, answer_request, validate_request
from cors_control import get_control

APP = "https://app.example.com"
SHOP = "https://shop.example.com"
SHARED = "https://shared.example.com"
ACME = "https://acme.example.com"
GLOBEX = "https://globex.example.com"
EVIL = "https://evil.example"

POLICY = {
    "tenants": [{"slug": "acme", "name": "Acme"}, {"slug": "globex", "name": "Globex"}],
    "rules": [
        {"path": "/api/*", "origins": [APP], "methods": ["GET", "POST", "PUT"],
         "allow_headers": ["content-type"], "expose_headers": ["X-Request-Id"],
         "max_age": 600},
        {"path": "/api/orders", "origins": [SHOP, "https://*.shop.example.com"],
         "methods": ["GET", "POST"], "allow_headers": ["content-type", "x-token"],
         "supports_credentials": True, "allow_private_network": True},
        # The tenant from the URL variable of the app's route /api/t/<tenant>/orders.
        {"path": "/api/t/*", "methods": ["GET", "POST"], "allow_headers": ["content-type"],
         "origins": [SHARED, {"value": ACME, "tenant": "acme"},
                     {"value": GLOBEX, "tenant": "globex"}],
         "tenant_selector": {"source": "view-arg", "key": "tenant", "unknown": "refuse"}},
        # The tenant from a request header; unknown tenants get the shared origins.
        {"path": "/api/echo", "methods": ["GET", "POST", "PUT"],
         "allow_headers": ["x-tenant", "content-type"], "supports_credentials": True,
         "origins": [SHARED, {"value": ACME, "tenant": "acme"}],
         "tenant_selector": {"source": "header", "key": "X-Tenant", "unknown": "shared"}},
        # The tenant from the subdomain of the Host.
        {"path": "/api/public/*", "methods": ["GET"], "allow_headers": ["content-type"],
         "origins": [{"value": ACME, "tenant": "acme"}, {"value": GLOBEX, "tenant": "globex"}],
         "tenant_selector": {"source": "subdomain", "key": "api.example.com",
                             "unknown": "refuse"}},
    ],
}


@dataclass(frozen=True)
class Case:
    origin: str
    path: str
    method: str = "GET"
    headers: tuple[str, ...] = ()
    values: tuple[tuple[str, str], ...] = ()
    host: str = "localhost"
    credentials: bool = False
    private_network: bool = False
    preflight: bool | None = None
    expect: str = ""  # the decision's reason, so the table says what it covers
    failures: tuple[str, ...] = field(default=())  # every failing check, when refused

    def __str__(self) -> str:
        extras = [f"H:{','.join(self.headers)}" if self.headers else "",
                  f"{self.values}" if self.values else "",
                  f"host={self.host}" if self.host != "localhost" else "",
                  "cred" if self.credentials else "", "pna" if self.private_network else "",
                  {True: "preflight", False: "no-preflight", None: ""}[self.preflight]]
        return " ".join([self.method, self.path, self.origin, *filter(None, extras)])


TENANT = (("X-Tenant", "acme"),)
OK, ORIGIN, METHOD, HEADER = ("allowed", "origin-not-allowed", "method-not-allowed",
                              "header-not-allowed")
CREDS, PNA, TENANT_UNKNOWN = ("credentials-not-allowed", "private-network-not-allowed",
                              "unknown-tenant")

CASES = [
    # /api/*: a plain rule
    Case(APP, "/api/public-ish/x", expect=OK),
    Case(APP, "/api/fail", expect=OK),
    Case(EVIL, "/api/fail", expect=ORIGIN, failures=(ORIGIN,)),
    Case(APP, "/api/nowhere", method="PUT", expect=OK),
    Case(APP, "/api/nowhere", method="DELETE", expect=METHOD, failures=(METHOD,)),
    Case(EVIL, "/api/nowhere", method="DELETE", expect=ORIGIN, failures=(ORIGIN, METHOD)),
    Case(APP, "/api/nowhere", method="POST", headers=("content-type",), expect=OK),
    Case(APP, "/api/nowhere", method="POST", headers=("x-a", "x-b"), expect=HEADER,
         failures=(HEADER, HEADER)),
    Case(EVIL, "/api/nowhere", method="DELETE", headers=("x-a",), credentials=True,
         private_network=True, expect=ORIGIN, failures=(ORIGIN, METHOD, HEADER, CREDS, PNA)),
    Case(APP, "/api/nowhere", credentials=True, expect=CREDS, failures=(CREDS,)),
    Case(APP, "/api/nowhere", method="PUT", credentials=True, expect=CREDS, failures=(CREDS,)),
    Case(EVIL, "/api/nowhere", credentials=True, expect=ORIGIN, failures=(ORIGIN, CREDS)),
    Case(APP, "/api/nowhere", private_network=True, expect=PNA, failures=(PNA,)),
    Case(APP, "/api/nowhere", method="PUT", preflight=False, expect=OK),
    Case("null", "/api/nowhere", expect=ORIGIN, failures=(ORIGIN,)),
    Case("HTTPS://APP.EXAMPLE.COM", "/api/nowhere", expect=ORIGIN, failures=(ORIGIN,)),
    # /api/orders: credentials and private network allowed
    Case(SHOP, "/api/orders", credentials=True, expect=OK),
    Case("https://eu.shop.example.com", "/api/orders", credentials=True, expect=OK),
    Case(SHOP, "/api/orders", method="POST", headers=("x-token",), credentials=True,
         expect=OK),
    Case(SHOP, "/api/orders", private_network=True, expect=OK),
    Case(SHOP, "/api/orders", method="PUT", credentials=True, expect=METHOD,
         failures=(METHOD,)),
    Case(APP, "/api/orders", credentials=True, expect=ORIGIN, failures=(ORIGIN,)),
    Case(SHOP, "/api/orders", method="POST", headers=("x-token", "x-other"), expect=HEADER,
         failures=(HEADER,)),
    # /api/t/*: the tenant from the URL variable
    Case(ACME, "/api/t/acme/orders", expect=OK),
    Case(GLOBEX, "/api/t/globex/orders", expect=OK),
    Case(SHARED, "/api/t/acme/orders", expect=OK),
    Case(ACME, "/api/t/globex/orders", expect=ORIGIN, failures=(ORIGIN,)),
    Case(ACME, "/api/t/initech/orders", expect=TENANT_UNKNOWN, failures=(TENANT_UNKNOWN,)),
    Case(ACME, "/api/t/acme/other", expect=TENANT_UNKNOWN, failures=(TENANT_UNKNOWN,)),
    Case(ACME, "/api/t/acme/orders", headers=("content-type",), expect=OK),
    # The route takes only GET: a POST matches no route, so it names no tenant.
    Case(ACME, "/api/t/acme/orders", method="POST", headers=("content-type",), expect=OK,
         failures=(TENANT_UNKNOWN,)),
    Case(ACME, "/api/t/acme/orders", method="PUT", expect=METHOD, failures=(METHOD,)),
    Case(ACME, "/api/t/acme/orders", credentials=True, expect=CREDS, failures=(CREDS,)),
    Case(GLOBEX, "/api/t/acme/orders", method="PUT", credentials=True, expect=ORIGIN,
         failures=(ORIGIN, METHOD, CREDS)),
    # /api/echo: the tenant from a request header (its preflight carries only the name)
    Case(ACME, "/api/echo", values=TENANT, preflight=False, expect=OK),
    Case(ACME, "/api/echo", method="PUT", values=TENANT, preflight=False, expect=OK),
    Case(ACME, "/api/echo", values=(("X-Tenant", "globex"),), preflight=False,
         expect=ORIGIN, failures=(ORIGIN,)),
    Case(SHARED, "/api/echo", values=(("X-Tenant", "initech"),), preflight=False,
         expect=OK),
    Case(ACME, "/api/echo", preflight=False, expect=ORIGIN, failures=(ORIGIN,)),
    Case(SHARED, "/api/echo", values=TENANT, credentials=True, expect=OK),
    Case(ACME, "/api/echo", method="PUT", values=TENANT, credentials=True,
         preflight=False, expect=OK),
    Case(ACME, "/api/echo", method="DELETE", values=TENANT, preflight=False, expect=METHOD,
         failures=(METHOD,)),
    # /api/public/*: the tenant from the subdomain of the Host
    Case(ACME, "/api/public/status", host="acme.api.example.com", expect=OK),
    Case(GLOBEX, "/api/public/status", host="globex.api.example.com", expect=OK),
    Case(ACME, "/api/public/status", host="globex.api.example.com", expect=ORIGIN,
         failures=(ORIGIN,)),
    Case(ACME, "/api/public/status", host="api.example.com", expect=TENANT_UNKNOWN,
         failures=(TENANT_UNKNOWN,)),
    Case(ACME, "/api/public/status", host="ACME.api.example.com:8080", expect=OK),
    Case(ACME, "/api/public/status", host="acme.api.example.com", method="POST",
         headers=("x-a",), expect=METHOD, failures=(METHOD, HEADER)),
    Case(ACME, "/api/public/status", host="initech.api.example.com", credentials=True,
         expect=TENANT_UNKNOWN, failures=(TENANT_UNKNOWN, CREDS)),
    # no rule governs the path: the engine adds nothing
    Case(APP, "/healthz", expect="no-rule", failures=("no-rule",)),
]


def test_the_table_covers_what_the_issue_asks():
    assert len(CASES) >= 40
    assert {c.expect for c in CASES} >= {OK, ORIGIN, METHOD, HEADER, CREDS, PNA,
                                         TENANT_UNKNOWN}
    assert any(c.preflight is not False and (c.method not in ("GET", "POST") or c.headers)
               for c in CASES)


@pytest.fixture
def served(app):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # /api/fail answers 500, as in production
    with app.app_context():
        import_policy(POLICY, actor=Actor("test", "cli"), replace=True)
    get_control(app).cache.refresh()
    return app


def ask(app, case: Case) -> Answer:
    validation = validate_request(
        origin=case.origin, method=case.method, path=case.path, header_names=case.headers,
        credentials=case.credentials, preflight=case.preflight, request_headers=case.values,
        host=case.host, private_network=case.private_network)
    assert validation.request is not None, validation.errors
    control = get_control(app)
    with app.app_context():
        return answer_request(validation.request, control.cache.get(), routes=control)


def over_http(client, simulation: Simulation, host: str):
    """The request the simulation describes, sent through the app's whole WSGI stack."""
    headers = [(name, value) for name, value in simulation.request_headers.items()
               if name != "Host"]
    method = "OPTIONS" if simulation.preflight else simulation.method
    return client.open(simulation.path, method=method, headers=headers,
                       base_url=f"http://{host}")


def vary(headers) -> set[str]:
    return {part.strip().lower() for name, value in headers if name.lower() == "vary"
            for part in value.split(",") if part.strip()}


def cors_part(headers, view_vary: set[str]) -> tuple[list[tuple[str, str]], set[str]]:
    """The Access-Control-* headers in order, and the Vary fields beyond the view's own
    (the engine merges its fields into the view's Vary line)."""
    headers = list(headers)
    return ([(n, v) for n, v in headers if n.lower().startswith("access-control-")],
            vary(headers) - view_vary)


def view_answer(client, simulation: Simulation, host: str):
    """What the view answers the same request without Origin, which the engine leaves alone:
    its status and its own Vary."""
    headers = [(n, v) for n, v in simulation.request_headers.items()
               if n not in ("Host", "Origin")]
    return client.open(simulation.path, method=simulation.method, headers=headers,
                       base_url=f"http://{host}")


def predicted(client, simulation: Simulation, host: str):
    """The simulation's answer: the engine's own status for a preflight, else the view's."""
    decision = simulation.decision
    if decision.status is not None:
        return decision.status, cors_part(decision.headers, set())
    view = view_answer(client, simulation, host)
    view_vary = vary(view.headers.items())
    return view.status_code, cors_part(decision.headers, view_vary), view_vary


def test_the_simulation_is_what_the_engine_sends_over_http(served):
    # Cookies are sent as the table says, never from a jar.
    client = served.test_client(use_cookies=False)
    mismatches = []
    for case in CASES:
        answer = ask(served, case)
        assert answer.simulation is not None
        if answer.simulation.decision.reason != case.expect:
            mismatches.append(f"{case}: decided {answer.simulation.decision.reason}, "
                              f"the table expects {case.expect}")
        failures = tuple(f.check for f in answer.failures)
        if failures != case.failures:
            mismatches.append(f"{case}: fails {failures}, the table expects {case.failures}")
        for simulation in filter(None, (answer.simulation, answer.actual)):
            status, simulated_headers, *view_vary = predicted(client, simulation, case.host)
            response = over_http(client, simulation, case.host)
            simulated = (status, simulated_headers)
            sent = (response.status_code,
                    cors_part(response.headers.items(), view_vary[0] if view_vary else set()))
            if simulated != sent:
                mismatches.append(f"{case}: simulated {simulated}, the engine sent {sent}")
    assert not mismatches, "\n".join(mismatches)


def test_a_table_entry_that_the_engine_answers_differently_is_caught(served):
    """The comparison can fail: a simulation that names no tenant is not what the server
    does for a request that names one."""
    client = served.test_client(use_cookies=False)
    case = Case(ACME, "/api/public/status", host="acme.api.example.com")
    answer = ask(served, Case(ACME, "/api/public/status", host="localhost"))
    assert answer.simulation is not None
    response = over_http(client, answer.simulation, case.host)
    assert cors_part(response.headers.items(), {"cookie"}) \
        != cors_part(answer.simulation.decision.headers, set())
