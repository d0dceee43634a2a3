"""Work each process does off the request path, after the engine's policy checks: hourly,
prune the request log and the policy's change log, purge long-expired origins and forget
processes that stopped without withdrawing from the overview.
"""

from __future__ import annotations

import logging
import time

from flask import Flask

from cors_control.cache import PolicyCache

from ..services.change_log import prune_change_log
from ..services.overview import forget_stopped_processes
from ..services.policy import purge_expired_origins
from ..services.request_log import prune_log

logger = logging.getLogger("cors_control")


class Housekeeping:
    """A check listener of the policy cache that runs :meth:`run` at most every ``every``
    seconds, and not while the database is unreachable."""

    def __init__(self, app: Flask, *, every: float = 3600.0) -> None:
        self.app = app
        self.every = every
        self._last = time.time()  # not at start-up: many workers start at once

    def __call__(self, cache: PolicyCache) -> None:
        now = time.time()
        if now - self._last < self.every or cache.last_error:
            return
        self._last = now
        self.run()

    def run(self) -> tuple[int, int]:
        """Prune the request log, purge origins expired beyond the retention period and delete
        the rows of processes that stopped; returns the log rows and origins deleted."""
        with self.app.app_context():
            try:
                rows = prune_log()
                origins = purge_expired_origins(
                    float(self.app.config.get("EXPIRED_ORIGIN_RETENTION_DAYS", 30)))
                forget_stopped_processes()
                prune_change_log(
                    keep_hours=float(self.app.config.get("CHANGE_LOG_RETENTION_HOURS", 24)))
            except Exception as exc:
                logger.warning("housekeeping failed: %s", type(exc).__name__)
                return 0, 0
        return rows, origins
