"""Attach the engine to a Flask app: ``CorsControl(app)`` or ``control.init_app(app)``.

The hooks are the thinnest possible layer over :func:`~app.cors.decision.decide`:

* the first ``before_request`` function answers preflights itself (204 or 403), so neither
  the view nor an authentication hook ever sees them;
* the last ``after_request`` function removes any ``Access-Control-*`` header that something
  else (flask-cors, a view) put on a governed response and writes the engine's own, on
  successes and on 404/405/500 responses alike. Routes no rule governs are left alone, so
  flask-cors can keep serving them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, g, request

from .cache import PolicyCache, PolicySource
from .decision import NO_ORIGIN, POLICY_UNAVAILABLE, Decision, decide
from .text import printable

DecisionListener = Callable[[Decision, object], None]

logger = logging.getLogger("app.cors")

_PREFIX = "access-control-"
_EXTENSION_KEY = "cors_control"


class CorsControl:
    """The engine as a Flask extension.

    :param source: where the policy comes from. Default: the database at
        ``CORS_DATABASE_URL``, else ``SQLALCHEMY_DATABASE_URI``.
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
        interval: float | None = None,
        excluded_prefixes: tuple[str, ...] | None = None,
        api_prefixes: tuple[str, ...] | None = None,
    ) -> None:
        self._source = source
        self._interval = interval
        self._excluded_prefixes = excluded_prefixes
        self._api_prefixes = api_prefixes
        self.listeners: list[DecisionListener] = []
        self.cache: PolicyCache | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        source = self._source or _database_source(app)
        interval = self._interval or float(app.config.get("CORS_REFRESH_INTERVAL", 0.5))
        self.cache = PolicyCache(source, interval=interval)
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
        app.extensions[_EXTENSION_KEY] = self
        # First before_request and last after_request (after_request runs in reverse).
        app.before_request_funcs.setdefault(None, []).insert(0, self._before_request)
        app.after_request_funcs.setdefault(None, []).insert(0, self._after_request)

    def add_listener(self, listener: DecisionListener) -> None:
        """Call *listener(decision, request)* for every decision on a governed path, and for
        CORS requests (with an Origin) that no rule governs. Listeners must be fast and must
        not raise; an exception is logged and the request goes on."""
        self.listeners.append(listener)

    def decide(self, method: str, path: str, headers) -> Decision:
        """Decide with this process's current snapshot, as a request would be."""
        return decide(self.cache.get(), method, path, headers)

    def _before_request(self) -> Response | None:
        path = request.path
        if path in self._excluded_exact or path.startswith(self._excluded_trees):
            return None
        snapshot = self.cache.get()
        if snapshot is None and not path.startswith(self.api_prefixes):
            return None
        decision = decide(snapshot, request.method, path, request.headers,
                          route_args=request.view_args)
        if decision.rule is None and decision.reason != POLICY_UNAVAILABLE:
            if decision.reason != NO_ORIGIN and self.listeners:
                self._notify(decision)
            return None
        g._cors_decision = decision
        if self.listeners:
            self._notify(decision)
        if decision.preflight:
            if decision.allowed:
                return Response(status=204)
            return Response(
                f"CORS preflight refused ({decision.reason}): "
                f"{printable(decision.explanation)}\n",
                status=403,
                mimetype="text/plain",
            )
        return None

    def _after_request(self, response: Response) -> Response:
        decision: Decision | None = g.pop("_cors_decision", None)
        if decision is None:
            return response
        headers = response.headers
        stale = [name for name, _ in headers if name[:15].lower() == _PREFIX]
        for name in stale:
            del headers[name]
        for name, value in decision.headers:
            if name == "Vary":
                _merge_vary(headers, value)
            else:
                headers[name] = value
        # flask-cors wraps app.handle_exception and runs its hook again on the 500 response
        # after every after_request function, adding its headers to a refusal. This is the
        # marker its own @cross_origin sets so that the extension leaves a response alone.
        response._FLASK_CORS_EVALUATED = True  # type: ignore[attr-defined]
        return response

    def _notify(self, decision: Decision) -> None:
        for listener in self.listeners:
            try:
                listener(decision, request)
            except Exception:  # a listener never breaks a request
                logger.exception("CORS decision listener failed")


def get_control(app: Flask) -> CorsControl:
    """The :class:`CorsControl` attached to *app*."""
    try:
        return app.extensions[_EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("CorsControl is not attached to this app; call CorsControl(app)") \
            from None


def _merge_vary(headers, value: str) -> None:
    # A response may carry several Vary lines; setting the header replaces all of them, so
    # every line is read and kept, not only the first.
    existing = [line for line in headers.getlist("Vary") if line.strip()]
    if not existing:
        headers["Vary"] = value
        return
    present = {part.strip().lower() for line in existing for part in line.split(",")}
    if "*" in present:
        return
    missing = [part for part in value.split(", ") if part.lower() not in present]
    if missing:
        headers["Vary"] = ", ".join([*existing, *missing])




def _database_source(app: Flask) -> PolicySource:
    from ..source import DatabasePolicySource

    url = app.config.get("CORS_DATABASE_URL") or app.config.get("SQLALCHEMY_DATABASE_URI")
    if not url:
        raise RuntimeError(
            "CorsControl needs a policy source: set CORS_DATABASE_URL (or "
            "SQLALCHEMY_DATABASE_URI) to the database that holds the rules"
        )
    return DatabasePolicySource.from_url(url)
