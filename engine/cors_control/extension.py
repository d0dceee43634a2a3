"""Attach the engine to a Flask app: ``CorsControl(app, source=...)``,
``CorsControl(app, database_url=...)`` (database mode) or ``CorsControl(app,
control_plane=URL, token=...)`` (control-plane mode, :mod:`.control_plane`); or any of them
without the app and later ``control.init_app(app)``.

The engine wraps ``app.wsgi_app``, so it sits outside everything Flask does:

* preflights are answered before Flask runs (204 or 403), so no view, authentication hook or
  other extension ever sees them;
* on every other response of a governed route (successes and 404/405/500 alike) it removes
  any ``Access-Control-*`` header that something else (flask-cors, a view) set and writes
  its own, as the response's headers pass through ``start_response``;
* routes no rule governs are passed through untouched, so flask-cors can keep serving them;
  a report-only rule governs nothing either: its routes are answered by the next enforcing
  rule that matches, or passed through, and it only adds findings for the listeners.

Working on the WSGI environ keeps the request path cheap: no request context, no
``LocalProxy`` lookups. The URL variables of the Flask route are matched only for rules that
select a tenant by one.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .database.runtime import DatabaseRuntime

from .cache import PolicyCache, PolicySource
from .control_plane import ControlPlaneRefusalSink, ControlPlaneSource
from .decision import (
    NO_ORIGIN,
    POLICY_UNAVAILABLE,
    AnswerKey,
    Decision,
    RequestHeaders,
    RouteArgs,
    decide,
    keep_answer,
)
from .refusals import RecorderSettings, RefusalRecorder
from .snapshot import PolicySnapshot
from .text import printable

DecisionListener = Callable[[Decision, "RequestView"], None]
DecisionTally = Callable[[Sequence[Decision]], None]

logger = logging.getLogger("cors_control")

_EXTENSION_KEY = "cors_control"
# Decisions queued for the tallies past which a request flushes them itself.
_QUIET_LIMIT = 65_536
_STATUS = {204: "204 No Content", 403: "403 Forbidden"}
# Header names as WSGI spells them, for the headers the engine reads on every request.
_ENVIRON_KEYS = {
    "Origin": "HTTP_ORIGIN",
    "Access-Control-Request-Method": "HTTP_ACCESS_CONTROL_REQUEST_METHOD",
    "Access-Control-Request-Headers": "HTTP_ACCESS_CONTROL_REQUEST_HEADERS",
    "Access-Control-Request-Private-Network": "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK",
    "Cookie": "HTTP_COOKIE",
    "Host": "HTTP_HOST",
}


class CorsControl:
    """The engine as a Flask extension. Give it exactly one of *source* and *database_url*.

    :param source: where the policy comes from: any :class:`~.cache.PolicySource`; nothing
        else is started.
    :param database_url: database mode: the SQLAlchemy URL of the admin application's database
        (``postgresql+psycopg://...``; SQLite for tests), which needs the ``database`` extra.
        The extension then polls the policy, listens for pushed changes on PostgreSQL
        (*listen*) and writes refusals to ``request_log`` (*request_log*), on an engine of
        its own that :meth:`close` disposes. The database role needs only ``SELECT`` on the
        policy tables (``policy_state``, ``rules``, ``allowed_origins``, ``rule_drafts``,
        ``tenants``, ``origin_lists``, ``origin_list_entries``, ``rule_origin_lists``) and
        ``INSERT`` and ``UPDATE`` on ``request_log``; with *heartbeat*, also ``INSERT``,
        ``UPDATE`` and ``DELETE`` on ``engine_processes``.
    :param listen: database mode on PostgreSQL: reload at once when a change is announced
        (``LISTEN`` on ``CORS_NOTIFY_CHANNEL``); polling every ``CORS_REFRESH_INTERVAL``
        seconds stays the fallback.
    :param request_log: database mode: record refused requests in ``request_log`` (settings
        from ``REQUEST_LOG_*``), so they show in the admin application.
    :param heartbeat: database mode: list each serving process, with the policy version it
        holds, in the admin application's overview (off by default).
    :param control_plane: control-plane mode: the base URL of the admin application to take
        the policy from over HTTP (:mod:`.control_plane`), with *token*, an API token of its
        ``data-plane`` role; refusals are sent back to it (*request_log*).
    :param cache_file: in control-plane mode, where to keep the last policy on disk (default
        ``CORS_POLICY_CACHE_FILE``; None: nowhere).
    :param excluded_prefixes: paths never governed, each with everything under it
        (default ``CORS_EXCLUDED_PREFIXES``).
    :param api_prefixes: paths refused cross-origin while no policy is loaded
        (default ``CORS_API_PREFIXES``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        source: PolicySource | None = None,
        database_url: str | None = None,
        control_plane: str | None = None,
        token: str | None = None,
        cache_file: str | None = None,
        listen: bool = True,
        request_log: bool = True,
        heartbeat: bool = False,
        interval: float | None = None,
        excluded_prefixes: tuple[str, ...] | None = None,
        api_prefixes: tuple[str, ...] | None = None,
    ) -> None:
        self._database: DatabaseRuntime | None = None
        self.feed: ControlPlaneSource | None = None
        self._recorder: RefusalRecorder | None = None
        self._request_log = request_log
        given = [name for name, value in (("source", source), ("database_url", database_url),
                                          ("control_plane", control_plane)) if value is not None]
        if len(given) != 1:
            raise TypeError("CorsControl needs exactly one policy source: source= (a "
                            "PolicySource), database_url= (the admin application's database) "
                            "or control_plane= (the admin application's URL, with token=); "
                            "not " + (" and ".join(given) if given else "none"))
        if control_plane is None and (token is not None or cache_file is not None):
            raise TypeError("token= and cache_file= belong to control-plane mode; give "
                            "control_plane= too")
        if database_url is not None:
            self._database = _database_runtime(database_url, listen=listen,
                                               request_log=request_log, heartbeat=heartbeat)
            source = self._database.source
        elif control_plane is not None:  # the feed checks the URL and the token
            self.feed = ControlPlaneSource(control_plane, token or "", cache_file=cache_file)
            self._refusal_sink = ControlPlaneRefusalSink(control_plane, token or "")
            source = self.feed
        assert source is not None
        self._source = source
        self._interval = interval
        self._excluded_prefixes = excluded_prefixes
        self._api_prefixes = api_prefixes
        # Listeners of every decision, listeners of the decisions with something to record
        # (refusals and findings), and tallies of the rest (see add_listener, add_tally).
        self.listeners: list[DecisionListener] = []
        self._finding_listeners: list[DecisionListener] = []
        self._tallies: list[DecisionTally] = []
        self._quiet: deque[Decision] = deque()
        self._listening = False
        # Made here so that it is never None; init_app sets the app's interval on it.
        self.cache = PolicyCache(source, interval=interval or 0.5)
        if self.feed is not None:
            self.cache.add_start_listener(self.feed)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if self._interval is None:
            self.cache.interval = float(app.config.get("CORS_REFRESH_INTERVAL", 0.5))
        self.excluded = tuple(
            self._excluded_prefixes
            if self._excluded_prefixes is not None
            else app.config.get("CORS_EXCLUDED_PREFIXES", ())
        )
        # "/admin" excludes /admin and everything under /admin/, but not /administrator.
        self._excluded_exact = frozenset(p.rstrip("/") or "/" for p in self.excluded)
        self._excluded_trees = tuple(p.rstrip("/") + "/" for p in self.excluded)
        self.api_prefixes = tuple(
            self._api_prefixes
            if self._api_prefixes is not None
            else app.config.get("CORS_API_PREFIXES", ("/api/",))
        )
        if self.feed is not None and self.feed.cache_file is None:
            self.feed.cache_file = app.config.get("CORS_POLICY_CACHE_FILE") or None
        self.app = app
        self._adapters: dict[tuple[object, ...], MapAdapter] = {}
        app.extensions[_EXTENSION_KEY] = self
        # Flask's documented way to wrap the app in WSGI middleware.
        app.wsgi_app = _CorsMiddleware(app.wsgi_app, self)  # type: ignore[method-assign]
        if self._database is not None:
            self._database.attach(self, app)
        elif self.feed is not None and self._request_log:
            # Control-plane mode: refusals go back to the admin application, aggregated and
            # batched like the admin application's own (never on the request path).
            settings = RecorderSettings.from_config(
                {**app.config, "CORS_API_PREFIXES": self.api_prefixes})
            self._recorder = RefusalRecorder(self._refusal_sink, settings)
            self.add_listener(self._recorder.record, every_decision=False)

    def close(self) -> None:
        """Stop the poller; in database mode the listener and the request log (writing what
        is pending first), then dispose the database engine made for it; in control-plane
        mode the feed, after sending the pending refusals. The last snapshot stays readable;
        closing twice does no harm."""
        self.cache.stop()
        self.flush_tallies()
        if self._database is not None:
            self._database.close()
        if self.feed is not None:
            self.feed.stop()
        if self._recorder is not None:
            self._recorder.stop(flush=True)

    def add_listener(self, listener: DecisionListener, *, every_decision: bool = True) -> None:
        """Call *listener(decision, request_view)* for every decision on a governed path, and
        for CORS requests (with an Origin) that no rule governs. ``decision`` is what was
        applied; ``decision.shadows`` what report-only rules watching the path would have
        refused, and ``decision.draft`` what the rule's draft would refuse that the rule
        allowed. Listeners must be fast and must not raise; an exception is logged and the
        request goes on.

        With *every_decision* false, only the decisions with something to record: a refusal
        (``decision.recordable``), report-only findings or a draft's. Allowed requests, and
        requests without an Origin, then never call the listener; :meth:`add_tally` counts
        them off the request path."""
        if every_decision:
            self.listeners.append(listener)
        self._finding_listeners.append(listener)
        self._listening = True

    def add_tally(self, tally: DecisionTally) -> None:
        """Call *tally(decisions)* with the decisions that have nothing to record (those
        :meth:`add_listener` with ``every_decision=False`` does not hear), in batches: after
        each check of the policy poller, and on :meth:`flush_tallies` (call it before reading
        what the tally counted). The request path only appends the decision to a queue, and
        flushes it only if it ever holds ``_QUIET_LIMIT`` decisions (no poller running)."""
        if not self._tallies:
            self.cache.add_check_listener(lambda _cache: self.flush_tallies())
        self._tallies.append(tally)
        self._listening = True

    def flush_tallies(self) -> None:
        """Hand every tally the decisions queued for it since the last flush."""
        quiet = self._quiet
        batch = []
        while quiet:  # popleft, not a swap: a request may append meanwhile
            try:
                batch.append(quiet.popleft())
            except IndexError:
                break
        if not batch:
            return
        for tally in self._tallies:
            try:
                tally(batch)
            except Exception:  # like a listener, a tally never breaks what called it
                logger.exception("CORS decision tally failed")

    def decide(self, method: str, path: str, headers: RequestHeaders) -> Decision:
        """Decide with this process's current snapshot, as a request would be."""
        return decide(self.cache.get(), method, path, headers)

    def route_args(self, path: str, *, method: str = "GET",
                   host: str | None = None) -> RouteArgs:
        """The URL variables the engine would read for a request to *path* on *host*: the
        simulator asks this, so a tenant named by the URL reaches :func:`decide` exactly as
        the middleware matches it (same adapter, same method)."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "",
            "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
        }
        if host is not None:
            environ["HTTP_HOST"] = host
        return _RouteArgs(self, environ, path)

    def _url_adapter(self, environ: WSGIEnvironment) -> MapAdapter:
        """The app's URL map bound to the request's host, script root and scheme; binding
        costs more than matching, so adapters are kept per (host, root, scheme), bounded."""
        key = (environ.get("HTTP_HOST"), environ.get("SCRIPT_NAME"),
               environ.get("wsgi.url_scheme"))
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = self.app.url_map.bind_to_environ(
                environ, server_name=self.app.config.get("SERVER_NAME"))
            if len(self._adapters) < 64:
                self._adapters[key] = adapter
        return adapter

    def status(self) -> dict[str, Any]:
        """Where the policy comes from and how fresh it is, JSON-ready: ``mode``
        (``database``, or whatever the source is, or ``control-plane``), ``version`` served
        (None: none, cross-origin requests on the API prefixes are refused), ``last_error``,
        and in control-plane mode ``serving_from`` (``control-plane``, ``cache-file`` or
        ``none``), ``last_success_age`` (seconds since the control plane last answered) and
        ``stale`` (the policy served is not confirmed current)."""
        cache = self.cache.status()
        status: dict[str, Any] = {"mode": getattr(self._source, "mode", "source"),
                                  "last_error": cache.last_error}
        if self.feed is not None:
            status.update(self.feed.status())
            status["last_error"] = self.feed.last_error or cache.last_error
        status.update({"version": cache.version, "loaded_at": cache.loaded_at})
        return status

    def health_view(self) -> ResponseReturnValue:
        """A view for a health route of the API, ``api.add_url_rule("/healthz/cors",
        view_func=control.health_view)``: :meth:`status` with 200 while a policy is served
        (stale or not), 503 while none is."""
        status = self.status()
        return status, 200 if status["version"] is not None else 503, \
            {"Cache-Control": "no-store"}

    def is_excluded(self, path: str) -> bool:
        return path in self._excluded_exact or path.startswith(self._excluded_trees)

    def _notify(self, decision: Decision, environ: WSGIEnvironment, path: str) -> None:
        if decision.recordable or decision.shadows or decision.draft is not None:
            listeners = self._finding_listeners
        else:
            if self._tallies:
                self._quiet.append(decision)
                if len(self._quiet) >= _QUIET_LIMIT:  # no poller flushes (it was stopped)
                    self.flush_tallies()
            listeners = self.listeners
        if not listeners:
            return
        view = RequestView(environ, path, environ.get("REQUEST_METHOD", "GET"))
        for listener in listeners:
            try:
                listener(decision, view)
            except Exception:  # a listener never breaks a request
                logger.exception("CORS decision listener failed")


class RequestView:
    """What listeners may read of a request: its path, method and headers."""

    __slots__ = ("environ", "path", "method", "_headers")

    def __init__(self, environ: dict[str, Any], path: str, method: str) -> None:
        self.environ = environ
        self.path = path
        self.method = method
        self._headers: EnvironHeaders | None = None

    @property
    def headers(self) -> EnvironHeaders:
        if self._headers is None:
            self._headers = EnvironHeaders(self.environ)
        return self._headers


class _EnvironHeaderView:
    """The few request headers :func:`decide` reads, straight from the environ (werkzeug's
    ``EnvironHeaders`` raises and catches an exception for every absent header)."""

    __slots__ = ("environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _ENVIRON_KEYS.get(name)
        if key is None:
            # Names come from code and from rules (a tenant header), never from requests.
            key = "HTTP_" + name.upper().replace("-", "_")
            if len(_ENVIRON_KEYS) < 1000:
                _ENVIRON_KEYS[name] = key
        value = self.environ.get(key)
        return default if value is None else value


class _RouteArgs:
    """The URL variables of the Flask route, matched only when a tenant rule asks."""

    __slots__ = ("control", "environ", "path", "_args")

    def __init__(self, control: CorsControl, environ: dict[str, Any], path: str) -> None:
        self.control = control
        self.environ = environ
        self.path = path
        self._args: Mapping[str, Any] | None = None

    def get(self, name: str, default: Any = None) -> Any:
        args = self._args
        if args is None:
            try:
                _endpoint, args = self.control._url_adapter(self.environ).match(
                    self.path, self.environ.get("REQUEST_METHOD", "GET"))
            except HTTPException:
                args = {}
            self._args = args
        return args.get(name, default)

    def __bool__(self) -> bool:
        return True


class _CorsMiddleware:
    def __init__(self, wsgi_app: WSGIApplication, control: CorsControl) -> None:
        self.wsgi_app = wsgi_app
        self.control = control

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        control = self.control
        path = environ.get("PATH_INFO") or ""
        if path[:1] != "/" or path[1:2] == "/" or not path.isascii():  # rare: normalise
            path = _request_path(environ)
        if path in control._excluded_exact or path.startswith(control._excluded_trees):
            return self.wsgi_app(environ, start_response)
        snapshot = control.cache.get()
        decision: Decision | None
        if snapshot is None:
            if not path.startswith(control.api_prefixes):
                return self.wsgi_app(environ, start_response)
            decision = self._decide(None, environ, path)
        else:
            # Most requests repeat one seen before: their answer is one dictionary lookup.
            method = environ.get("REQUEST_METHOD", "GET")
            key: AnswerKey = (path, environ.get("HTTP_ORIGIN"), method, "HTTP_COOKIE" in environ)
            if method == "OPTIONS":
                key += (environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"),
                        environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
                        environ.get("HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"))
            decision = snapshot.granted.get(key) or snapshot.refused.get(key)
            if decision is None:
                decision = self._decide(snapshot, environ, path)
                keep_answer(snapshot, key, decision)
        if control._listening and (decision.rule is not None or decision.reason != NO_ORIGIN):
            control._notify(decision, environ, path)
        if decision.rule is None and decision.reason != POLICY_UNAVAILABLE:
            return self.wsgi_app(environ, start_response)
        if decision.preflight:
            return _answer_preflight(decision, start_response)
        grant = decision.headers

        def start_with_cors(status: str, headers: list[tuple[str, str]],
                            exc_info: OptExcInfo | None = None) -> Callable[[bytes], object]:
            _apply(headers, grant)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_cors)

    def _decide(self, snapshot: PolicySnapshot | None, environ: WSGIEnvironment,
                path: str) -> Decision:
        return decide(snapshot, environ.get("REQUEST_METHOD", "GET"), path,
                      _EnvironHeaderView(environ),
                      route_args=_RouteArgs(self.control, environ, path))


def _request_path(environ: dict[str, Any]) -> str:
    """The path as Flask routes it (werkzeug decodes PATH_INFO from latin-1 as UTF-8)."""
    raw = environ.get("PATH_INFO") or ""
    if not raw.isascii():
        raw = raw.encode("latin-1", "replace").decode("utf-8", "replace")
    return "/" + raw.lstrip("/")


def _apply(headers: list[tuple[str, str]], grant: tuple[tuple[str, str], ...]) -> None:
    """Make the engine's CORS headers the only ones: drop any other ``Access-Control-*``,
    merge ``Vary``, add the grant. Edits the WSGI header list in place."""
    for name, _value in headers:
        lowered = name.lower()
        if lowered == "vary" or lowered[:15] == "access-control-":
            break
    else:  # the usual response: nothing to drop, nothing to merge with
        headers.extend(grant)
        return
    vary_at = -1
    vary_lines = 0
    index = 0
    while index < len(headers):
        name = headers[index][0].lower()
        if name[:15] == "access-control-":
            del headers[index]
            continue
        if name == "vary":
            vary_at = index
            vary_lines += 1
        index += 1
    for name, value in grant:
        if name != "Vary" or vary_at == -1:
            headers.append((name, value))
        elif vary_lines == 1:
            # The usual case: one Vary line (Flask's "Cookie"); add the missing fields to it.
            existing = headers[vary_at][1]
            merged = _VARY_MERGES.get((existing, value))
            if merged is None:
                merged = _merged_vary([existing], value)
                if len(_VARY_MERGES) < 256:  # the app's own Vary values, a handful
                    _VARY_MERGES[existing, value] = merged
            if merged is not existing:
                headers[vary_at] = ("Vary", merged)
        else:
            lines = [v for n, v in headers if n.lower() == "vary"]
            merged = _merged_vary(lines, value)
            headers[:] = [(n, v) for n, v in headers if n.lower() != "vary"]
            headers.append(("Vary", merged))


# (the response's one Vary line, the grant's Vary) → the merged line.
_VARY_MERGES: dict[tuple[str, str], str] = {}


def _merged_vary(lines: list[str], value: str) -> str:
    """Every field of *lines* once, plus those of *value* that are missing."""
    present = {part.strip().lower() for line in lines for part in line.split(",")}
    kept = ", ".join(line for line in lines if line.strip())
    if "*" in present:
        return kept
    missing = [part for part in value.split(", ") if part.lower() not in present]
    if not missing:
        return lines[0] if len(lines) == 1 else kept
    return ", ".join([kept, *missing]) if kept else ", ".join(missing)


def _answer_preflight(decision: Decision, start_response: StartResponse) -> list[bytes]:
    if decision.allowed:
        start_response(_STATUS[204], list(decision.headers))
        return [b""]
    body = (f"CORS preflight refused ({decision.reason}): "
            f"{printable(decision.explanation)}\n").encode()
    start_response(_STATUS[403], [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Content-Type-Options", "nosniff"),
        *decision.headers,
    ])
    return [body]


def _database_runtime(url: str, *, listen: bool, request_log: bool,
                      heartbeat: bool) -> DatabaseRuntime:
    try:
        from .database.runtime import DatabaseRuntime
    except ImportError as exc:
        raise ImportError(f"database_url= needs the database extra ({exc.name} is missing): "
                          "pip install 'cors-control[database]'") from exc
    return DatabaseRuntime(url, listen=listen, request_log=request_log, heartbeat=heartbeat)


def get_control(app: Flask) -> CorsControl:
    """The :class:`CorsControl` attached to *app*."""
    try:
        control: CorsControl = app.extensions[_EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "CorsControl is not attached to this app; call CorsControl(app, source=...) "
            "or CorsControl(app, database_url=...)"
        ) from None
    return control

