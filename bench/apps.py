"""The apps under test: one minimal Flask view, bare, under flask-cors, or under the engine.

Requests go straight to ``app.wsgi_app`` with a prebuilt WSGI environ, the way a WSGI server
calls it, so the figures carry no test-client overhead; every variant is called the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import flask_cors
from flask import Flask, Response
from werkzeug.test import EnvironBuilder

from app.request_log.metrics import DecisionCounters
from cors_control import CorsControl, OriginEntry, RuleSpec
from cors_control.refusals import RecorderSettings, RefusalRecorder, RefusalRow

PATH = "/api/orders"
RULE_PATH = "/api/*"
REFUSED_ORIGIN = "https://evil.example.net"

Environ = dict[str, object]
StatusAndHeaders = tuple[int, dict[str, str]]


def allowed_origins(count: int) -> list[str]:
    """*count* distinct https origins spread over 97 registrable domains."""
    return [allowed_origin(i) for i in range(count)]


def allowed_origin(index: int) -> str:
    """The origin at *index* in every :func:`allowed_origins` list longer than that."""
    return f"https://app{index}.example{index % 97}.com"


@dataclass(frozen=True, slots=True)
class StaticSource:
    """A policy source held in memory: one rule, one version, never changing."""

    rules: tuple[RuleSpec, ...]
    version: int = 1

    @classmethod
    def for_origins(cls, origins: Sequence[str]) -> StaticSource:
        rule = RuleSpec(path=RULE_PATH, origins=tuple(OriginEntry(v) for v in origins))
        return cls(rules=(rule,))

    def current_version(self) -> int:
        return self.version

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        return self.version, list(self.rules), []


@dataclass(frozen=True, slots=True)
class GeneratedSource:
    """A policy source of one rule allowing ``allowed_origins(count)``, built anew on each
    load and not kept: the process holds only the compiled snapshot, as a worker that reads
    its policy from a database does (a :class:`StaticSource` of a million origins would also
    keep a million entries alive, and the garbage collector would walk them)."""

    count: int
    version: int = 1

    def current_version(self) -> int:
        return self.version

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        rule = RuleSpec(path=RULE_PATH,
                        origins=tuple(OriginEntry(v) for v in allowed_origins(self.count)))
        return self.version, [rule], []


def bare_app() -> Flask:
    """The view alone; the baseline every variant is compared to."""
    app = Flask(__name__)

    @app.route(PATH, methods=["GET", "PUT"])
    def orders() -> dict[str, object]:
        return {"orders": [{"id": 1, "item": "coffee"}, {"id": 2, "item": "tea"}]}

    return app


def hook_floor_app(origin: str) -> Flask:
    """The least any CORS layer built on Flask hooks can cost: a before_request hook that does
    nothing and an after_request hook that adds the two headers an allowed GET gets."""
    app = bare_app()

    @app.before_request
    def nothing() -> None:
        return None

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.add("Access-Control-Allow-Origin", origin)
        response.headers.add("Vary", "Origin")
        return response

    return app


def middleware_floor_app(origin: str) -> Flask:
    """The least a CORS layer in WSGI middleware (as the engine is) can cost: a middleware
    that wraps ``start_response`` and only adds the two headers an allowed GET gets."""
    app = bare_app()
    app.wsgi_app = _HeaderMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, (("Access-Control-Allow-Origin", origin), ("Vary", "Origin")))
    return app


class _HeaderMiddleware:
    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]],
                 headers: tuple[tuple[str, str], ...]) -> None:
        self.wsgi_app = wsgi_app
        self.headers = headers

    def __call__(self, environ: Environ, start_response: Callable[..., object]
                 ) -> Iterable[bytes]:
        added = self.headers

        def start_with_headers(status: str, headers: list[tuple[str, str]],
                               exc_info: object = None) -> object:
            headers.extend(added)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_headers)


def flask_cors_app(origins: Sequence[str]) -> Flask:
    app = bare_app()
    flask_cors.CORS(app, resources={RULE_PATH: {"origins": list(origins)}})
    return app


def engine_app(origins: Sequence[str] | GeneratedSource) -> tuple[Flask, CorsControl]:
    """The view under the engine allowing *origins* (or those a generated source holds), its
    snapshot already loaded; stop ``control.cache`` after."""
    app = bare_app()
    source = origins if isinstance(origins, GeneratedSource) \
        else StaticSource.for_origins(origins)
    control = CorsControl(app, source=source)
    control.cache.get()
    return app, control


def listened_engine_app(origins: Sequence[str]) -> tuple[Flask, CorsControl]:
    """:func:`engine_app` with the admin application's listeners attached as
    ``RequestLog.init_app`` attaches them (the counters of ``/metrics`` and the refusal
    recorder, here writing nowhere): what an allowed request costs in the admin app's
    database mode, apart from the database."""
    app, control = engine_app(origins)
    counters = DecisionCounters()
    recorder = RefusalRecorder(_NoSink(), RecorderSettings())
    control.add_listener(counters.observe, every_decision=False)
    control.add_tally(counters.observe_all)
    control.add_listener(recorder.record, every_decision=False)
    return app, control


class _NoSink:
    def write(self, rows: Sequence[RefusalRow]) -> None:
        return None


def get_environ(origin: str) -> Environ:
    return EnvironBuilder(path=PATH, method="GET", headers={"Origin": origin}).get_environ()


def preflight_environ(origin: str) -> Environ:
    return EnvironBuilder(
        path=PATH,
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    ).get_environ()


def request_call(app: Flask, environ: Environ) -> Callable[[], None]:
    """The same request on every call."""
    one = serve(app)

    def call() -> None:
        one(environ)

    return call


def serve(app: Flask) -> Callable[[Environ], None]:
    """*app* as a WSGI server calls it (call, drain the body, close), for the environ given on
    each call; the app gets a copy, as it may write into the environ it gets."""
    wsgi_app = app.wsgi_app

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> None:
        return None

    def call(environ: Environ) -> None:
        body = wsgi_app(dict(environ), start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return call


def cycling_call(app: Flask, environs: Sequence[Environ]) -> Callable[[], None]:
    """One request per call, each with the next of *environs*, round and round: a stream of
    requests from many clients rather than one request repeated."""
    one = serve(app)
    upcoming = itertools.cycle(environs)

    def call() -> None:
        one(next(upcoming))

    return call


def probe(app: Flask, environ: Environ) -> StatusAndHeaders:
    """The status and headers *app* answers *environ* with (to check a variant before timing)."""
    seen: list[StatusAndHeaders] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info=None) -> None:
        seen.append((int(status.split(" ", 1)[0]), dict(headers)))

    body = app.wsgi_app(dict(environ), start_response)
    b"".join(body)
    getattr(body, "close", lambda: None)()
    return seen[0]
