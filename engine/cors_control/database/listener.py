"""Push: each process listens for the policy version that a change sends with ``NOTIFY``, and
reloads at once instead of waiting for its next poll.

Every change bumps the policy version and sends ``pg_notify(channel, version)`` in the same
transaction (the admin application's unit of work), so a notification arrives only for a committed
change. Each process keeps one connection of its own for ``LISTEN``, in autocommit mode and
outside any pool, read by a daemon thread. After every (re)connect the thread listens first and
then checks the current version once, so no change falls between the two; notifications sent
while it was disconnected are lost by PostgreSQL, that check catches up with them.

Polling stays: while the listener is connected the poller checks every
``CORS_LISTEN_REFRESH_INTERVAL`` seconds (a safety net), while it is not, every
``CORS_REFRESH_INTERVAL`` seconds as before. The thread reconnects by itself with a growing
delay and logs the loss and the recovery once each.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref

import psycopg
import sqlalchemy as sa
from psycopg import sql

from ..cache import PolicyCache

logger = logging.getLogger("cors_control")

DEFAULT_CHANNEL = "cors_policy"
APPLICATION_NAME = "cors-control-listener"
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# How long the thread waits for a notification before it looks at its stop flag, and how
# often an idle connection is checked with a query (a silently dropped connection).
_WAKE_EVERY = 0.5
_PING_EVERY = 30.0
# While the version it was told about is not loaded yet (a read replica behind the primary).
_CATCH_UP_EVERY = 0.05
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0

_live_listeners: weakref.WeakSet[PolicyListener] = weakref.WeakSet()


def check_channel(channel: str) -> str:
    """The channel name, or a ValueError that says what a valid one looks like."""
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(f"CORS_NOTIFY_CHANNEL {channel!r} is not a valid channel name: use "
                         "lower-case letters, digits and underscores, starting with a letter "
                         "or an underscore, at most 63 characters")
    return channel


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as libpq takes it."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PolicyListener:
    """Listens on *channel* at *url* and refreshes *cache* when a newer version is announced.

    :param interval: the poll interval while the listener is not connected;
    :param listening_interval: the (slower) one while it is.
    """

    def __init__(self, url: str, cache: PolicyCache, *, channel: str = DEFAULT_CHANNEL,
                 interval: float, listening_interval: float) -> None:
        self.conninfo = libpq_url(url)
        self.cache = cache
        self.channel = check_channel(channel)
        self.interval = interval
        self.listening_interval = listening_interval
        self.connected = False
        self.reconnects = 0
        self.notifications = 0
        self._wanted = 0
        self._conn: psycopg.Connection | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._start_lock = threading.Lock()
        _live_listeners.add(self)

    @property
    def application_name(self) -> str:
        """How the connection shows in ``pg_stat_activity``: one per process."""
        return f"{APPLICATION_NAME}/{os.getpid()}"

    def __call__(self, cache: PolicyCache) -> None:
        """A start listener of the cache: runs when its poller starts in a process."""
        self.start()

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._stopped.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="cors-policy-listener",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close its connection; stopping twice does no harm."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        delay = _BACKOFF_FIRST
        outage_logged = False
        while not self._stopped.is_set():
            try:
                self._connect()
            except Exception as exc:
                if not outage_logged:
                    logger.error("CORS policy listener cannot connect (%s); polling every %s s "
                                 "and retrying", _describe(exc), self.interval)
                    outage_logged = True
                self._stopped.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            if outage_logged:
                logger.warning("CORS policy listener connected again; changes are pushed")
            outage_logged = False
            delay = _BACKOFF_FIRST
            try:
                self._listen()
            except Exception as exc:
                if not self._stopped.is_set():
                    logger.error("CORS policy listener lost its connection (%s); polling every "
                                 "%s s and reconnecting", _describe(exc), self.interval)
                    outage_logged = True
                    self.reconnects += 1
            finally:
                self._disconnect()
            self._stopped.wait(delay)
        self._disconnect()

    def _connect(self) -> None:
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3,
                               application_name=self.application_name)
        self._conn = conn
        # LISTEN first, then read the version once: nothing committed in between is missed.
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self.connected = True
        self.cache.interval = self.listening_interval
        logger.info("CORS policy listener listening on channel %s", self.channel)
        self.cache.refresh()

    def _listen(self) -> None:
        conn = self._conn
        assert conn is not None
        last_ping = time.monotonic()
        while not self._stopped.is_set():
            held = self.cache.snapshot.version if self.cache.snapshot is not None else -1
            behind = self._wanted > held
            for notify in conn.notifies(timeout=_CATCH_UP_EVERY if behind else _WAKE_EVERY,
                                        stop_after=1):
                self.notifications += 1
                try:
                    self._wanted = max(self._wanted, int(notify.payload))
                except ValueError:
                    self._wanted = max(self._wanted, held + 1)  # not ours: check anyway
            held = self.cache.snapshot.version if self.cache.snapshot is not None else -1
            if self._wanted > held:
                self.cache.refresh(announced=self._wanted)
                last_ping = time.monotonic()
            elif time.monotonic() - last_ping > _PING_EVERY:
                conn.execute("SELECT 1")
                last_ping = time.monotonic()

    def _disconnect(self) -> None:
        if self.connected:
            self.cache.interval = self.interval
        self.connected = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _after_fork(self) -> None:
        # The thread does not survive fork(); the child starts its own when its poller
        # starts, on a connection of its own. The inherited connection is dropped, never
        # closed: closing it would end the parent's session (psycopg does not finish a
        # connection made in another process when it is collected).
        self._conn = None
        self._thread = None
        self._start_lock = threading.Lock()
        if self.connected:
            self.cache.interval = self.interval
        self.connected = False


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _reset_after_fork() -> None:
    for listener in list(_live_listeners):
        listener._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
