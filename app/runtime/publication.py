"""The policy as the admin application serves it to data planes (control-plane mode).

Data planes long-poll ``GET /admin/api/v1/data-plane/policy``. This process's own
:class:`~cors_control.cache.PolicyCache` already follows the policy version (polling on
SQLite, pushed on PostgreSQL), so a poll waits on that cache and wakes as soon as it loads a
newer version. The document of a version is read once through the cache's source, encoded
once and shared by every data plane that asks for it.

Each long poll holds a worker thread while it waits; the number of concurrent waits is
bounded (``DATA_PLANE_MAX_WAITERS``) so data planes cannot take every thread of the admin
application: past the bound a poll is answered at once.
"""

from __future__ import annotations

import json
import threading

from cors_control.cache import PolicyCache, PolicySource
from cors_control.wire import encode_policy


class PolicyPublication:
    """The newest policy, encoded for data planes, and the long polls waiting for the next."""

    def __init__(self, cache: PolicyCache, source: PolicySource, *, max_waiters: int) -> None:
        self.cache = cache
        self.source = source
        self.max_waiters = max_waiters
        self._waiters = threading.BoundedSemaphore(max_waiters)
        self._lock = threading.Lock()
        self._document: tuple[int, bytes] | None = None

    def current(self) -> tuple[int, bytes]:
        """``(version, JSON document)`` of the newest policy this process knows of; read and
        encoded once per version, whoever asks."""
        snapshot = self.cache.get()
        wanted = -1 if snapshot is None else snapshot.version
        document = self._document
        if document is not None and document[0] >= wanted:
            return document
        with self._lock:  # one load per version, not one per waking data plane
            document = self._document
            if document is not None and document[0] >= wanted:
                return document
            version, specs, tenants = self.source.load_with_tenants()
            body = json.dumps(encode_policy(version, specs, tenants),
                              separators=(",", ":")).encode()
            if document is None or version >= document[0]:
                self._document = document = (version, body)
            return document

    def wait_for_newer(self, version: int, timeout: float) -> bool | None:
        """Wait at most *timeout* seconds for a policy newer than *version*: True when there
        is one, False when the time ran out, None when too many polls wait already."""
        if not self._waiters.acquire(blocking=False):
            return None
        try:
            snapshot = self.cache.wait_for_version(version, timeout)
        finally:
            self._waiters.release()
        return snapshot is not None and snapshot.version > version
