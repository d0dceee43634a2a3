"""The per-process policy cache: a snapshot on the request path, a poller behind it.

Requests read :attr:`PolicyCache.snapshot`, an attribute of an immutable object: no lock, no
query. A daemon thread checks the policy version at most once per interval and builds a new
snapshot only when the version moved: from the one held and what changed since, when the
source can say (:class:`ChangeFeed`, :mod:`.delta`), else by compiling the whole policy. So
a change committed by any process or host sharing the database is served within one interval
plus the time to load it. If the database is
unreachable the last good snapshot stays in service (fail-static), the outage is logged once,
and the poller recovers by itself. Before any snapshot was loaded, there is none: the engine
then refuses cross-origin requests (fail closed).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .delta import PolicyDelta, apply_delta
from .snapshot import PolicySnapshot, RuleSpec, compile_policy

logger = logging.getLogger("cors_control")


class PolicySource(Protocol):
    """Where the policy comes from; the database in production, anything in tests."""

    def current_version(self) -> int:
        """The policy version, cheaply (one small query)."""

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        """A consistent view of the version, every rule and the slugs of every tenant."""


@runtime_checkable
class ChangeFeed(Protocol):
    """A source that can also say what changed since a version (see :mod:`.delta`)."""

    def load_changes(self, since: int) -> PolicyDelta | None:
        """What changed after version *since*, up to the current version; None when the
        source cannot tell (its change log no longer reaches back that far): load in full."""


CheckListener = Callable[["PolicyCache"], None]
StartListener = Callable[["PolicyCache"], None]


def load_policy(source: PolicySource) -> PolicySnapshot:
    """Load and compile, the cyclic garbage collector paused meanwhile."""
    with _collector_paused():
        version, specs, tenants = source.load_with_tenants()
        return compile_policy(version, specs, tenants)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A full load allocates an object or more per origin, a million of them at that size,
    none in a reference cycle; collections triggered by those allocations walk the growing
    heap again and again (a third of a cold start's CPU). Reference counting still frees
    what the load drops, and the collector is on again afterwards if it was before."""
    if not gc.isenabled():  # off already (or paused by another load): leave it as it is
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(frozen=True, slots=True)
class CacheStatus:
    version: int | None
    loaded_at: float | None
    last_check: float | None
    last_error: str | None
    pid: int

    @property
    def healthy(self) -> bool:
        return self.version is not None


_live_caches: weakref.WeakSet[PolicyCache] = weakref.WeakSet()


class PolicyCache:
    """Holds the current :class:`PolicySnapshot` of one process and keeps it fresh."""

    def __init__(self, source: PolicySource, *, interval: float = 0.5) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be a positive number of seconds")
        self.source = source
        self.interval = interval
        self.check_listeners: list[CheckListener] = []
        self.start_listeners: list[StartListener] = []
        self.snapshot: PolicySnapshot | None = None
        self.last_check: float | None = None
        self.last_error: str | None = None
        self._older_seen: int | None = None
        # How the snapshot held was made: "full" or "incremental" (None before the first).
        self.last_load: str | None = None
        self._lock = threading.Lock()
        # Notified whenever a newer snapshot is installed (see wait_for_version).
        self._changed = threading.Condition(threading.Lock())
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        _live_caches.add(self)

    def add_check_listener(self, listener: CheckListener) -> None:
        """Call *listener(cache)* after each check of the poller (and each :meth:`refresh`),
        never on a request's thread; listeners run in the order added, and an exception is
        logged and does not stop the next one."""
        self.check_listeners.append(listener)

    def add_start_listener(self, listener: StartListener) -> None:
        """Call *listener(cache)* each time the poller starts in a process (on first use, and
        again in a forked child): the place to start what should run beside it, such as a
        listener that triggers :meth:`refresh` on a pushed notification."""
        self.start_listeners.append(listener)

    def get(self) -> PolicySnapshot | None:
        """The snapshot to decide with; starts the poller on first use in a process."""
        if self._thread is None:
            self._start()
        return self.snapshot

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopped.is_set():
                return
            if self.snapshot is None:
                # The first request of a process loads synchronously, once; if that fails the
                # poller keeps trying and requests are refused until a policy is loaded.
                self._refresh_locked(report=False)
            self._thread = threading.Thread(
                target=self._run, name="cors-policy-poller", daemon=True
            )
            self._thread.start()
        for listener in self.start_listeners:
            try:
                listener(self)
            except Exception:
                logger.exception("CORS policy start listener failed")

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.refresh()

    def refresh(self, *, announced: int | None = None) -> bool:
        """Check the version now and reload if it moved; returns whether a load happened.
        *announced* is a version the caller was told about (a pushed notification): when it
        is newer than the one held, the load starts at once, without the version check."""
        with self._lock:
            return self._refresh_locked(announced=announced)

    def _refresh_locked(self, *, report: bool = True, announced: int | None = None) -> bool:
        loaded = False
        try:
            current = self.snapshot
            if current is None:
                version = None
            elif announced is not None and announced > current.version:
                version = announced
            else:
                version = self.source.current_version()
            if current is None or (version is not None and version > current.version):
                fresh = self._load(current)
                if current is not None and fresh.version < current.version:
                    self._refuse_older(fresh.version, current.version)
                else:
                    self.snapshot = fresh
                    loaded = True
                    self._older_seen = None
                    with self._changed:
                        self._changed.notify_all()
                    if current is not None:
                        logger.info("CORS policy version %d loaded (was %d)",
                                    fresh.version, current.version)
            elif version is not None and version < current.version:
                self._refuse_older(version, current.version)
        except Exception as exc:  # any failure keeps the last good snapshot in service
            if self.last_error is None:
                if self.snapshot is None:
                    logger.error("CORS policy could not be loaded; refusing cross-origin "
                                 "requests until it can: %s", _describe(exc))
                else:
                    logger.error("CORS policy source unreachable; serving version %d until it "
                                 "recovers: %s", self.snapshot.version, _describe(exc))
            self.last_error = _describe(exc)
        else:
            if self.last_error is not None:
                logger.warning("CORS policy source reachable again; serving version %d",
                               self.snapshot.version if self.snapshot else -1)
            self.last_error = None
        self.last_check = time.time()
        if report:  # never on a request's thread
            self._notify_check_listeners()
        return loaded

    def wait_for_version(self, newer_than: int, timeout: float) -> PolicySnapshot | None:
        """Block until the snapshot held is newer than *newer_than*, or *timeout* seconds
        pass; returns the snapshot held then (None while there is none). For long polls:
        each waiter holds its thread, not the cache's lock."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                snapshot = self.snapshot
                remaining = deadline - time.monotonic()
                if (snapshot is not None and snapshot.version > newer_than) or remaining <= 0 \
                        or self._stopped.is_set():
                    return snapshot
                self._changed.wait(remaining)

    def _load(self, current: PolicySnapshot | None) -> PolicySnapshot:
        """The newest snapshot: built from *current* with what changed since, when the source
        keeps a change log that reaches back to it; else compiled in full."""
        if current is not None and isinstance(self.source, ChangeFeed):
            try:
                delta = self.source.load_changes(current.version)
                if delta is not None:
                    fresh = apply_delta(current, delta)
                    self.last_load = "incremental"
                    return fresh
            except Exception as exc:  # a full load below still serves the new version
                logger.warning("CORS policy changes could not be applied (%s); loading the "
                               "policy in full", _describe(exc))
        fresh = load_policy(self.source)
        self.last_load = "full"
        return fresh

    def reload(self) -> bool:
        """Load and compile the whole policy now, whatever the version held (on demand: an
        operator's check, or after the database was restored); returns whether it was
        installed (never an older version than the one served)."""
        with self._lock:
            current = self.snapshot
            fresh = load_policy(self.source)
            if current is not None and fresh.version < current.version:
                self._refuse_older(fresh.version, current.version)
                return False
            self.snapshot = fresh
            self.last_load = "full"
            with self._changed:
                self._changed.notify_all()
            return True

    def _refuse_older(self, version: int, held: int) -> None:
        # Reloads are monotonic: a worker never serves a newer version and then an older
        # one (a lagging replica behind a load balancer, a notification racing a poll).
        if self._older_seen != version:
            self._older_seen = version
            logger.warning("CORS policy source reports version %d, older than the %d this "
                           "process serves; keeping %d (after restoring the database to an "
                           "earlier state, restart the processes)", version, held, held)

    def _notify_check_listeners(self) -> None:
        for listener in self.check_listeners:
            try:
                listener(self)
            except Exception:
                logger.exception("CORS policy check listener failed")

    def status(self) -> CacheStatus:
        snapshot = self.snapshot
        return CacheStatus(
            version=None if snapshot is None else snapshot.version,
            loaded_at=None if snapshot is None else snapshot.loaded_at,
            last_check=self.last_check,
            last_error=self.last_error,
            pid=os.getpid(),
        )

    def stop(self) -> None:
        """Stop the poller (tests, shutdown); the snapshot stays readable."""
        self._stopped.set()
        with self._changed:  # waiters return at once
            self._changed.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _after_fork(self) -> None:
        # The poller thread does not survive fork(); the child starts its own on first use.
        self._lock = threading.Lock()
        self._changed = threading.Condition(threading.Lock())
        self._thread = None


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _reset_after_fork() -> None:
    for cache in list(_live_caches):
        cache._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
