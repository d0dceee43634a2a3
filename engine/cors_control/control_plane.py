"""Control-plane mode: a data plane takes its policy from the admin application over HTTP.

An API host runs ``CorsControl(api, control_plane="https://cors-admin.internal", token=...)``
and needs no database credentials. :class:`ControlPlaneSource` is the engine's policy source
in that mode:

* a daemon thread (the *feed*) long-polls ``GET /admin/api/v1/data-plane/policy`` with the
  version it holds in ``If-None-Match``; the control plane answers when the policy changes
  (200) or when the wait ends (304). Each new policy is handed to the :class:`PolicyCache` at
  once (``refresh(announced=...)``); the cache never installs an older version;
* the cache's own poller only reads the version held in memory, so no request and no poll
  waits on the network, except the first load of a process, which fetches once (briefly);
* fail-static: through control-plane outages the last good policy stays in service; errors
  back off with jitter; a refused token and a policy format this version cannot read are
  logged clearly, once;
* with a cache file (``cache_file=`` or ``CORS_POLICY_CACHE_FILE``) each new policy is written
  to disk atomically (mode 0600) and read back at start, so a host restarted during an outage
  serves the last policy it had instead of refusing (fail-closed is what remains without one).

:class:`ControlPlaneRefusalSink` sends a data plane's refusal rows the other way.

Only the standard library's ``urllib`` is used: no dependency beyond the engine's own.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .refusals import SinkUnavailable
from .snapshot import RuleSpec
from .text import printable
from .wire import (
    DATA_PLANE_POLICY_PATH,
    DATA_PLANE_REFUSALS_PATH,
    MAX_REFUSAL_ROWS,
    POLICY_FORMAT,
    POLICY_MEDIA_TYPE,
    REFUSALS_MEDIA_TYPE,
    PayloadError,
    RefusalRow,
    UnknownFormat,
    decode_policy,
    encode_refusals,
    policy_etag,
)

if TYPE_CHECKING:
    from .cache import PolicyCache

logger = logging.getLogger("cors_control")

MODE = "control-plane"
SERVING_CONTROL_PLANE = "control-plane"
SERVING_CACHE_FILE = "cache-file"
SERVING_NONE = "none"
# How long the control plane may hold a poll open (it caps this at 60 s); the response
# timeout adds RESPONSE_SLACK to it.
DEFAULT_WAIT = 25
RESPONSE_SLACK = 10.0
# The first load of a process fetches once, synchronously, on the first request's thread.
FIRST_FETCH_TIMEOUT = 3.0
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
# A Retry-After longer than this is not honoured as is (a control plane is not down for days).
_RETRY_AFTER_MAX = 60.0
# After a 200 that brought nothing newer (a proxy that drops If-None-Match): no busy loop.
_NOTHING_NEW_PAUSE = 1.0


class ControlPlaneError(Exception):
    """The control plane gave no usable policy; the message says why and what to fix."""


def control_plane_url(base: str, path: str) -> str:
    """*path* below the control plane's base URL; a ValueError says what a valid base is."""
    parts = urlsplit(base or "")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
            or parts.fragment:
        raise ValueError(f"control_plane {base!r} is not the base URL of the admin "
                         "application; give its http(s) address, such as "
                         "https://cors-admin.internal")
    return base.rstrip("/") + path


def _check_token(token: str | None) -> str:
    if not token or not token.strip():
        raise ValueError("control-plane mode needs a token: create one on the admin "
                         "application (flask tokens create NAME --role data-plane) and pass "
                         "it as token=...")
    return token.strip()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is here: following it would send the bearer
    token to wherever it points."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int,
                         msg: str, headers: Message, newurl: str) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


def _user_agent() -> str:
    return f"cors-control-data-plane ({socket.gethostname()}; pid {os.getpid()})"


@dataclass(frozen=True, slots=True)
class _Policy:
    version: int
    specs: list[RuleSpec]
    tenants: list[str]


_live_sources: weakref.WeakSet[ControlPlaneSource] = weakref.WeakSet()


class ControlPlaneSource:
    """The policy as the control plane serves it (a :class:`~.cache.PolicySource`).

    :param url: the admin application's base URL (``https://cors-admin.internal``).
    :param token: an API token of the ``data-plane`` role.
    :param cache_file: where to keep the last policy on disk (None: nowhere).
    :param wait: how long each long poll may be held open by the control plane, in seconds.
    """

    def __init__(self, url: str, token: str, *, cache_file: str | None = None,
                 wait: int = DEFAULT_WAIT) -> None:
        self.base_url = url
        self.policy_url = control_plane_url(url, DATA_PLANE_POLICY_PATH)
        self._token = _check_token(token)
        if url.startswith("http://") and urlsplit(url).hostname not in (
                "localhost", "127.0.0.1", "::1"):
            logger.warning("CORS control plane %s is plain http: the token and the policy "
                           "cross the network unencrypted; use https", printable(url))
        self.cache_file = cache_file
        self.wait = max(0, min(int(wait), 60))
        self.serving_from = SERVING_NONE
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.policies_received = 0
        self._policy: _Policy | None = None
        self._first_load_done = False
        self._logged_error: str | None = None
        self._refused_formats: set[str] = set()
        self._older_seen: int | None = None
        self._cache: PolicyCache | None = None
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        _live_sources.add(self)

    # -- PolicySource --------------------------------------------------------------------------

    def current_version(self) -> int:
        """The version held in memory: the cache's poller never waits on the network."""
        policy = self._policy
        if policy is None:
            raise ControlPlaneError(self._no_policy())
        return policy.version

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        """The policy held; the first call of a process reads the cache file and fetches
        once (no long poll), so a process serves from its first request when it can."""
        if not self._first_load_done:
            with self._lock:
                if not self._first_load_done:
                    self._first_load_done = True
                    self._read_cache_file()
                    self._fetch(wait=0, timeout=FIRST_FETCH_TIMEOUT, notify=False)
        policy = self._policy
        if policy is None:
            raise ControlPlaneError(self._no_policy())
        return policy.version, policy.specs, policy.tenants

    def _no_policy(self) -> str:
        return (f"no policy from the control plane {printable(self.base_url)} yet"
                + (f" ({self.last_error})" if self.last_error else ""))

    # -- the feed thread -----------------------------------------------------------------------

    def __call__(self, cache: PolicyCache) -> None:
        """A start listener of the cache: the feed starts with the cache's poller, in every
        process (again in a forked child)."""
        self._cache = cache
        self.start()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopped.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="cors-control-plane-feed",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the feed; a poll under way ends by itself (the thread is a daemon)."""
        self._stopped.set()

    def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._stopped.is_set():
            ok, pause = self._fetch(wait=self.wait, timeout=self.wait + RESPONSE_SLACK)
            if ok:
                delay = _BACKOFF_FIRST
            else:  # full jitter, so data planes that lost the control plane together spread
                pause = max(pause, random.uniform(delay / 2, delay))
                delay = min(delay * 2, _BACKOFF_MAX)
            if pause > 0:
                self._stopped.wait(pause)

    def _fetch(self, *, wait: int, timeout: float, notify: bool = True) -> tuple[bool, float]:
        """One GET of the policy; returns (whether the control plane answered usefully,
        seconds to pause before the next one)."""
        policy = self._policy
        headers = {"Authorization": f"Bearer {self._token}",
                   "Accept": f"{POLICY_MEDIA_TYPE}, application/json",
                   "User-Agent": _user_agent()}
        url = self.policy_url
        if policy is not None:
            headers["If-None-Match"] = policy_etag(policy.version)
            url += f"?wait={wait}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with _opener.open(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                pause = _retry_after(exc.headers)
                if exc.code == 304:
                    self._succeeded()
                    return True, pause
                self._failed_with_status(exc)
                return False, pause
        except _NETWORK_ERRORS as exc:
            self._failed(f"the control plane {printable(self.base_url)} is unreachable: "
                         f"{_describe(exc)}")
            return False, 0.0
        return self._received(body, notify=notify)

    def _received(self, body: bytes, *, notify: bool) -> tuple[bool, float]:
        try:
            document = json.loads(body)
            version, specs, tenants = decode_policy(document)
        except UnknownFormat:
            found = document.get("format") if isinstance(document, dict) else None
            self._refuse_format(found)
            return False, 0.0
        except (PayloadError, ValueError) as exc:
            self._failed(f"the control plane sent a policy this cors_control cannot read: "
                         f"{printable(str(exc))}")
            return False, 0.0
        if self._stopped.is_set():
            return True, 0.0
        installed = self._install(_Policy(version, specs, tenants), body, notify=notify)
        self._succeeded()
        return True, 0.0 if installed else _NOTHING_NEW_PAUSE

    def _install(self, policy: _Policy, payload: bytes, *, notify: bool) -> bool:
        """Hold *policy* and hand it to the cache, unless it is not newer than the one held;
        returns whether it was."""
        held = self._policy
        if held is not None and policy.version < held.version:
            if self._older_seen != policy.version:  # never go back to an older version
                self._older_seen = policy.version
                logger.warning("CORS control plane sent policy version %d, older than the %d "
                               "this process serves; keeping %d", policy.version,
                               held.version, held.version)
            return False
        if held is not None and policy.version == held.version:
            return False
        self._policy = policy
        self.policies_received += 1
        self.serving_from = SERVING_CONTROL_PLANE
        if self.cache_file:
            self._write_cache_file(payload)
        cache = self._cache
        if notify and cache is not None:
            cache.refresh(announced=policy.version)
        return True

    def _succeeded(self) -> None:
        self.last_success = time.time()
        if self._policy is not None:
            # A 304 confirms that a policy read from the cache file is the current one.
            self.serving_from = SERVING_CONTROL_PLANE
        if self.last_error is not None and self._logged_error is not None:
            logger.warning("CORS control plane %s reachable again; serving version %s",
                           printable(self.base_url),
                           self._policy.version if self._policy else "none")
        self.last_error = None
        self._logged_error = None

    def _failed_with_status(self, exc: urllib.error.HTTPError) -> None:
        detail = _problem_detail(exc)
        if exc.code in (401, 403):
            self._failed(f"the control plane refused the token ({exc.code}{detail}); give "
                         "CorsControl a live token of the data-plane role (an admin creates "
                         "one with flask tokens create NAME --role data-plane)")
        elif 300 <= exc.code < 400:
            self._failed(f"the control plane answered with a redirect ({exc.code}); give its "
                         "final address as control_plane (redirects are not followed: they "
                         "would carry the token elsewhere)")
        else:
            self._failed(f"the control plane answered {exc.code}{detail}")

    def _failed(self, message: str) -> None:
        self.last_error = message
        if self._logged_error != message:  # each distinct failure once, not every retry
            self._logged_error = message
            policy = self._policy
            if policy is None:
                logger.error("CORS policy unavailable, refusing cross-origin requests on the "
                             "API prefixes until it is: %s", message)
            else:
                logger.error("CORS control plane: %s; serving version %d until it recovers",
                             message, policy.version)

    def _refuse_format(self, found: object) -> None:
        message = (f"control plane sends policy format {found!r}; this cors_control reads "
                   f"{POLICY_FORMAT}: upgrade cors-control")
        self.last_error = message
        if repr(found) not in self._refused_formats:
            self._refused_formats.add(repr(found))
            self._logged_error = message
            logger.error("%s (keeping policy version %s meanwhile)", message,
                         self._policy.version if self._policy else "none")

    # -- the cache file ------------------------------------------------------------------------

    def _read_cache_file(self) -> None:
        path = self.cache_file
        if not path:
            return
        try:
            with open(path, "rb") as file:
                document = json.loads(file.read())
            version, specs, tenants = decode_policy(document)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # PayloadError and UnknownFormat included
            logger.error("CORS policy cache file %s ignored: %s", printable(path),
                         printable(str(exc)))
            return
        self._policy = _Policy(version, specs, tenants)
        self.serving_from = SERVING_CACHE_FILE
        logger.warning("CORS policy version %d read from the cache file %s; it is served "
                       "until the control plane confirms or replaces it", version,
                       printable(path))

    def _write_cache_file(self, payload: bytes) -> None:
        path = self.cache_file
        assert path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            # mkstemp creates the file with mode 0600; os.replace swaps it in whole.
            fd, temporary = tempfile.mkstemp(prefix=".cors-policy-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(payload)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            logger.error("CORS policy cache file %s could not be written: %s",
                         printable(path), _describe(exc))

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The feed's state, JSON-ready (see :meth:`CorsControl.status`)."""
        now = time.time()
        policy = self._policy
        return {
            "mode": MODE,
            "control_plane": self.base_url,
            "received_version": None if policy is None else policy.version,
            "serving_from": self.serving_from if policy is not None else SERVING_NONE,
            "last_success_age": None if self.last_success is None
            else round(now - self.last_success, 3),
            "last_error": self.last_error,
            "stale": policy is None or self.last_error is not None
            or self.serving_from != SERVING_CONTROL_PLANE,
            "cache_file": self.cache_file,
        }

    def _after_fork(self) -> None:
        # The feed thread does not survive fork(); the child's cache starts its own.
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._thread = None


def _retry_after(headers: Message | None) -> float:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), _RETRY_AFTER_MAX)


def _problem_detail(exc: urllib.error.HTTPError) -> str:
    """``: <detail>`` of the problem document the control plane answered with, if any."""
    try:
        body = json.loads(exc.read(20_000) or b"null")
    except (ValueError, OSError):
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    return f": {printable(detail)}" if isinstance(detail, str) and detail else ""


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket's error
    inner = reason if isinstance(reason, BaseException) else exc
    text = str(inner).splitlines()[0] if str(inner) else ""
    return printable(f"{type(inner).__name__}: {text}" if text else type(inner).__name__)


def _reset_after_fork() -> None:
    for source in list(_live_sources):
        source._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)


class ControlPlaneRefusalSink:
    """Sends refusal rows to the control plane (a :class:`~.refusals.RefusalSink`).

    Rows go in documents of at most :data:`~.wire.MAX_REFUSAL_ROWS`; one document is stored
    all or nothing. A write of more rows than that is several documents: if a later one fails
    to arrive, the earlier ones are stored already and a retry of the whole batch counts them
    twice (at least once, never lost).

    Unreachable, 5xx, 408 and 429 raise :class:`SinkUnavailable` (retry later), and so do 401
    and 403: a revoked token is fixed by configuration, and the rows should wait for it, not
    be dropped. Any other 4xx is a refusal of the data: ``ValueError`` with the control
    plane's message.
    """

    def __init__(self, url: str, token: str, *, source: str | None = None,
                 timeout: float = 10.0) -> None:
        self.refusals_url = control_plane_url(url, DATA_PLANE_REFUSALS_PATH)
        self._token = _check_token(token)
        self.source = source if source is not None else socket.gethostname()
        self.timeout = timeout

    def write(self, rows: Sequence[RefusalRow]) -> None:
        for start in range(0, len(rows), MAX_REFUSAL_ROWS):
            self._post(rows[start:start + MAX_REFUSAL_ROWS])

    def _post(self, rows: Sequence[RefusalRow]) -> None:
        body = json.dumps(encode_refusals(rows, source=self.source),
                          separators=(",", ":")).encode()
        request = urllib.request.Request(self.refusals_url, data=body, method="POST", headers={
            "Authorization": f"Bearer {self._token}",
            "Content-Type": REFUSALS_MEDIA_TYPE,
            "Accept": "application/json",
            "User-Agent": _user_agent(),
        })
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _problem_detail(exc)
            if exc.code == 413 and len(rows) > 1:  # a smaller control-plane limit: halve
                half = len(rows) // 2
                self._post(rows[:half])
                self._post(rows[half:])
                return
            if exc.code >= 500 or exc.code in (401, 403, 408, 429):
                raise SinkUnavailable(f"the control plane answered {exc.code}{detail}") \
                    from None
            raise ValueError(f"the control plane refused {len(rows)} refusal rows "
                             f"({exc.code}){detail}") from None
        except _NETWORK_ERRORS as exc:
            raise SinkUnavailable(f"the control plane {printable(self.refusals_url)} is "
                                  f"unreachable: {_describe(exc)}") from None
