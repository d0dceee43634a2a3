"""flask-cors as an oracle: where it is correct, the engine must decide as it does.

For static configurations that flask-cors handles correctly (exact origin lists, no wildcards
or regular expressions, method lists, credentials on or off, header lists), a plain Flask app
serving the same demo routes under ``flask_cors.CORS(app, resources={r"/api/*": {...}})`` and
the real app under the engine with the equivalent rule receive the same matrix of requests.
The engine must grant exactly the origins flask-cors grants, and a browser (modelled by
:func:`browser_accepts`, after the Fetch Standard's CORS check and CORS-preflight fetch) must
reach the same verdict with either server.

Where flask-cors differs on purpose, the case is left out of the raw header comparison, and
why:

* **Substring method check.** flask-cors tests ``method in "GET, POST"``, so ``OST`` gets an
  ``Access-Control-Allow-Methods`` line, and it upper-cases ``put`` before checking. The engine
  compares method names byte for byte and answers 403. Such names appear only in the
  browser-verdict test, where the browser's own exact check refuses both.
* **Refused preflights are answered 200.** flask-cors lets Flask's automatic ``OPTIONS``
  answer every preflight and only leaves headers out; it even sends ``Access-Control-Allow-Origin``
  when the method is not allowed, relying on the missing ``Access-Control-Allow-Methods``. The
  engine answers 403 with no CORS headers. So "origin granted" is compared only for preflights
  whose method and headers the rule allows; all others are compared through the browser verdict.
* **No ``Vary: Origin`` on refusals or with one listed origin.** flask-cors adds it only when
  several origins could match and never on refusals; the engine sends it on every response of
  a governed route. ``Vary`` is not compared.
* **``max_age=0`` is dropped** by flask-cors (a falsy value); the engine sends ``0``.
  ``Access-Control-Max-Age`` is not compared and no configuration here sets it.
* **Regex heuristics.** flask-cors compiles any origin containing ``*``, ``?``, ``$`` ... as a
  regular expression matched with ``re.match`` (unanchored at the end), so
  ``https://*.example.com`` or ``https://app.example.com`` written as a pattern lets
  ``https://app.example.com.evil.net`` through. Only literal origins are configured here.
* **Case-insensitive origins.** flask-cors matches ``HTTPS://APP.EXAMPLE.COM`` (casefold) and
  echoes it; the engine compares the serialized origin byte for byte. Browsers only send the
  lowercase serialization, so such origins are not generated.
* **Methods and credentials on actual requests.** flask-cors checks methods only on preflights
  and never looks at whether the request carries cookies; the engine refuses an actual request
  whose method is outside the rule, or that carries ``Cookie`` on a rule without credentials.
  The raw comparison sends only listed methods, and cookies only to credentialed rules; the
  browser-verdict test sends cookies everywhere (the browser refuses flask-cors's answer for
  lack of ``Access-Control-Allow-Credentials``, as it refuses the engine's).
* **No Origin.** flask-cors's ``always_send`` answers requests without ``Origin`` with its
  allowlist; the engine leaves them alone. Every request here carries an ``Origin``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from flask_cors import CORS

from app.demo import bp as demo_bp
from cors_control.snapshot import DEFAULT_METHODS

APP = "https://app.example.com"
PARTNER = "https://partner.example.org"
LOCAL = "http://localhost:3000"

ORIGINS = [
    APP,
    PARTNER,
    LOCAL,
    "http://localhost:3001",
    "https://stranger.example.net",
    "https://app.example.com.evil.net",
    "http://app.example.com",
    "null",
]
REQUEST_HEADERS = ["", "content-type", "x-api-key", "content-type,x-api-key", "x-other"]
# What a browser may put in Access-Control-Request-Method, and names it never sends.
PREFLIGHT_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "patch", "put", "OST"]
SAFELISTED_METHODS = {"GET", "HEAD", "POST"}


@dataclass(frozen=True)
class Config:
    origins: list[str]
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    supports_credentials: bool = False
    allow_headers: list[str] = field(default_factory=lambda: ["*"])

    def as_rule(self) -> dict:
        return {"path": "/api/*", "origins": self.origins, "methods": self.methods,
                "supports_credentials": self.supports_credentials,
                "allow_headers": self.allow_headers}

    def as_flask_cors(self) -> dict:
        return {"origins": self.origins, "methods": self.methods,
                "supports_credentials": self.supports_credentials,
                "allow_headers": self.allow_headers}

    def allows_headers(self, requested: str) -> bool:
        allowed = {h.lower() for h in self.allow_headers}
        return "*" in allowed or all(n in allowed for n in _names(requested))


CONFIGS = {
    "two-origins-default-methods": Config([APP, PARTNER]),
    "credentials-get-post": Config([APP], ["GET", "POST"], supports_credentials=True),
    "header-list-put-delete": Config([APP, LOCAL], ["GET", "PUT", "DELETE"],
                                     allow_headers=["Content-Type", "X-Api-Key"]),
    "credentials-header-list": Config([PARTNER, LOCAL], ["GET", "POST", "PATCH"],
                                      supports_credentials=True,
                                      allow_headers=["X-Api-Key"]),
}


def _names(value: str) -> list[str]:
    return [n.strip().lower() for n in value.split(",") if n.strip()]


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def passes_cors_check(response: Response, origin: str, credentialed: bool) -> bool:
    """The Fetch Standard's CORS check on one response."""
    values = response.headers.getlist("Access-Control-Allow-Origin")
    if len(values) != 1:
        return False
    if values[0] == "*":
        return not credentialed
    if values[0] != origin:
        return False
    return not credentialed or response.headers.get("Access-Control-Allow-Credentials") == "true"


def browser_accepts(response: Response, origin: str, *, credentialed: bool,
                    preflight_method: str | None = None, requested: str = "") -> bool:
    """Whether a browser accepts *response* (a preflight response when *preflight_method*)."""
    if not passes_cors_check(response, origin, credentialed):
        return False
    if preflight_method is None:
        return True
    if not 200 <= response.status_code < 300:
        return False
    methods = _list(response.headers.get("Access-Control-Allow-Methods"))
    wildcard_methods = "*" in methods and not credentialed
    if preflight_method not in methods and preflight_method not in SAFELISTED_METHODS \
            and not wildcard_methods:
        return False
    allowed = {h.lower() for h in _list(response.headers.get("Access-Control-Allow-Headers"))}
    for name in _names(requested):
        covered = name in allowed or ("*" in allowed and not credentialed
                                      and name != "authorization")
        if not covered:
            return False
    return True


def browser_would_preflight(method: str, requested: str) -> bool:
    return method not in SAFELISTED_METHODS or bool(_names(requested))


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def config(request) -> Config:
    return CONFIGS[request.param]


@pytest.fixture
def servers(app, policy, config) -> tuple[FlaskClient, FlaskClient]:
    """(engine client, flask-cors client), both configured from *config*."""
    policy(config.as_rule())
    oracle = Flask("flask_cors_oracle")
    oracle.register_blueprint(demo_bp, url_prefix="/api")
    CORS(oracle, resources={r"/api/*": config.as_flask_cors()})
    return app.test_client(use_cookies=False), oracle.test_client(use_cookies=False)


def _preflight(client: FlaskClient, origin: str, method: str, requested: str) -> Response:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if requested:
        headers["Access-Control-Request-Headers"] = requested
    return client.options("/api/echo", headers=headers)


def test_actual_requests_are_granted_exactly_as_flask_cors_grants_them(servers, config):
    engine, oracle = servers
    cookies = [None, "sid=1"] if config.supports_credentials else [None]
    mismatches = []
    for origin, method, cookie in product(ORIGINS, config.methods, cookies):
        if method == "OPTIONS":
            continue
        headers = {"Origin": origin} | ({"Cookie": cookie} if cookie else {})
        ours = engine.open("/api/echo", method=method, headers=headers)
        theirs = oracle.open("/api/echo", method=method, headers=headers)
        got = [ours.headers.getlist(h) for h in ("Access-Control-Allow-Origin",
                                                  "Access-Control-Allow-Credentials")]
        want = [theirs.headers.getlist(h) for h in ("Access-Control-Allow-Origin",
                                                     "Access-Control-Allow-Credentials")]
        if got != want:
            mismatches.append((origin, method, cookie, got, want))
    assert mismatches == []


def test_preflights_grant_an_origin_exactly_when_flask_cors_does(servers, config):
    engine, oracle = servers
    mismatches = []
    granted = 0
    for origin, method, requested in product(ORIGINS, config.methods, REQUEST_HEADERS):
        if not config.allows_headers(requested):
            continue  # flask-cors still sends ACAO there: a refusal only by omission
        ours = _preflight(engine, origin, method, requested)
        theirs = _preflight(oracle, origin, method, requested)
        assert theirs.status_code == 200  # flask-cors answers every preflight 200
        ours_grant = ours.headers.getlist("Access-Control-Allow-Origin") == [origin]
        theirs_grant = theirs.headers.getlist("Access-Control-Allow-Origin") == [origin]
        granted += ours_grant
        if (ours_grant, ours.status_code) != (theirs_grant, 204 if theirs_grant else 403):
            mismatches.append((origin, method, requested, ours.status_code, theirs_grant))
    assert mismatches == []
    assert granted > 0, "the matrix must contain allowed preflights"


def test_a_browser_reaches_the_same_verdict_with_the_engine_as_with_flask_cors(
    servers, config
):
    engine, oracle = servers
    credentialed = config.supports_credentials
    mismatches = []
    verdicts = set()
    for origin, method, requested in product(ORIGINS, PREFLIGHT_METHODS, REQUEST_HEADERS):
        if not browser_would_preflight(method, requested):
            continue
        ours = _preflight(engine, origin, method, requested)
        theirs = _preflight(oracle, origin, method, requested)
        verdict = browser_accepts(ours, origin, credentialed=credentialed,
                                  preflight_method=method, requested=requested)
        expected = browser_accepts(theirs, origin, credentialed=credentialed,
                                   preflight_method=method, requested=requested)
        verdicts.add(verdict)
        if verdict != expected or verdict != (ours.status_code == 204):
            mismatches.append(("preflight", origin, method, requested, verdict, expected))
    for origin, method, cookie in product(ORIGINS, ["GET", "POST"], [None, "sid=1"]):
        if method not in config.methods:
            continue
        headers = {"Origin": origin} | ({"Cookie": cookie} if cookie else {})
        ours = engine.open("/api/echo", method=method, headers=headers)
        theirs = oracle.open("/api/echo", method=method, headers=headers)
        verdict = browser_accepts(ours, origin, credentialed=cookie is not None)
        expected = browser_accepts(theirs, origin, credentialed=cookie is not None)
        if verdict != expected:
            mismatches.append(("actual", origin, method, cookie, verdict, expected))
    assert mismatches == []
    assert verdicts == {True, False}, "the matrix must contain accepted and refused preflights"
