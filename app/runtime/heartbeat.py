"""Each process reports which policy version it serves, so a stale worker is visible.

A check listener of the policy cache: called by the engine's poller after each check (never on
the request path); writes one row per process at most every ``every`` seconds.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..cors.cache import PolicyCache
from ..models import EngineProcess

_table = EngineProcess.__table__


class ProcessHeartbeat:
    def __init__(self, engine: sa.Engine, *, every: float = 5.0) -> None:
        self.engine = engine
        self.every = every
        self.started_at = datetime.now(UTC)
        self._last = 0.0
        self._host = socket.gethostname()[:150]

    def __call__(self, cache: PolicyCache) -> None:
        now = time.time()
        if now - self._last < self.every:
            return
        self._last = now
        status = cache.status()
        pid = os.getpid()
        row = {
            "id": f"{self._host}:{pid}",
            "host": self._host,
            "pid": pid,
            "policy_version": status.version,
            "last_check": datetime.fromtimestamp(status.last_check or now, UTC),
            "started_at": self.started_at,
            "last_error": status.last_error or "",
        }
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(_table).values(row)
        statement = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={k: statement.excluded[k] for k in row if k not in ("id", "started_at")},
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(statement)
        except Exception:
            if status.last_error:
                return  # the database is down; the cache has logged the outage once
            raise
