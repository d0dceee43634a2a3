"""The alert job: every ``ALERTS_INTERVAL`` seconds, compute alerts from the request log and
send the deliveries that are due (:mod:`app.services.alerts`).

It runs in its own thread, never on the request path, started by the first policy check of
a serving process (so CLI commands and scripts never run it) and stopped by
:func:`app.close_app`. Several processes or hosts may run it on one database: each alert is
recorded once (a unique key per webhook, origin and rule) and each delivery is claimed by
one runner before it is sent. A receiver that is down or a database outage is logged and
tried again on the next round; it never stops the job.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from cors_control.cache import PolicyCache

from ..extensions import db
from ..services.alerts import Evaluation, deliver_due, evaluate_alerts

logger = logging.getLogger("app.alerts")


class AlertJob:
    """A check listener of the policy cache that starts the job's thread once per process;
    :meth:`run_once` is one round (what tests call)."""

    def __init__(self, app: Flask, *, every: float = 30.0, enabled: bool = True) -> None:
        self.app = app
        self.every = every
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failing = False

    def __call__(self, cache: PolicyCache) -> None:
        if not self.enabled or self._stop.is_set():
            return
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:  # a thread does not survive fork(): the child starts its own
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="cors-alerts",
                                                daemon=True)
                self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.run_once()

    def run_once(self) -> tuple[Evaluation, int]:
        """Compute alerts, then send what is due. Never raises: a failure is logged once
        (and its recovery), and the next round tries again."""
        with self.app.app_context():
            try:
                evaluation = evaluate_alerts()
                sent = deliver_due()
            except Exception as exc:
                db.session.rollback()
                if not self._failing:
                    logger.warning("alert job failed, retrying every %.0f s: %s: %s",
                                   self.every, type(exc).__name__, str(exc)[:200])
                self._failing = True
                return Evaluation(), 0
            finally:
                db.session.remove()
        if self._failing:
            logger.warning("alert job works again")
            self._failing = False
        return evaluation, sent

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=10)
