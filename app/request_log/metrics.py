"""Prometheus metrics: decisions by rule and reason, log health, the policy version loaded.

Counting is a dict increment on the request path; the Prometheus families are built only when
``/metrics`` is scraped. There is no origin label: label cardinality stays bounded by the
number of rules and reason codes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cors_control import CorsControl
from cors_control.decision import ALLOWED, NO_ORIGIN, Decision
from cors_control.refusals import RefusalRecorder


class DecisionCounters:
    """Engine listener counting every decision on a governed route (and unmatched CORS
    requests) by (rule, decision, reason)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def observe(self, decision: Decision, request: object) -> None:
        """Count the decision applied, each report-only finding under its own rule, and a
        draft's finding under its rule."""
        self._count(decision, _outcome(decision))
        for finding in decision.shadows:
            self._count(finding, "report-only")
        if decision.draft is not None:
            self._count(decision.draft, "draft")

    def observe_all(self, decisions: Sequence[Decision]) -> None:
        """Count a batch of decisions with nothing to record (the engine's tally of allowed
        requests and requests without an Origin): one lock for the batch."""
        batch = Counter(_key(decision, _outcome(decision)) for decision in decisions)
        with self._lock:
            for key, count in batch.items():
                self._counts[key] = self._counts.get(key, 0) + count

    def _count(self, decision: Decision, outcome: str) -> None:
        key = _key(decision, outcome)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)


def _outcome(decision: Decision) -> str:
    if decision.reason == NO_ORIGIN:
        return "not-cors"
    return "allowed" if decision.allowed else "refused"


def _key(decision: Decision, outcome: str) -> tuple[str, str, str]:
    rule = decision.rule.path if decision.rule is not None else ""
    return (rule, outcome, decision.reason if decision.reason != ALLOWED else "")


class CorsCollector(Collector):
    def __init__(self, counters: DecisionCounters, recorder: RefusalRecorder,
                 control: CorsControl) -> None:
        self.counters = counters
        self.recorder = recorder
        self.control = control
        self.cache = control.cache

    def collect(self) -> Iterator:
        requests = CounterMetricFamily(
            "cors_requests", "Requests decided by the CORS engine",
            labels=["rule", "decision", "reason"])
        self.control.flush_tallies()  # the allowed requests counted since the last check
        for (rule, outcome, reason), count in sorted(self.counters.snapshot().items()):
            requests.add_metric([rule, outcome, reason], count)
        yield requests
        yield from self._log_health()
        status = self.cache.status()
        yield GaugeMetricFamily("cors_policy_version", "Policy version loaded by this process "
                                "(-1 when none)", value=-1 if status.version is None
                                else status.version)
        yield GaugeMetricFamily("cors_policy_last_check_timestamp_seconds",
                                "When this process last checked the policy version",
                                value=status.last_check or 0)

    def _log_health(self) -> Iterator:
        """A flush that keeps failing shows as a growing oldest-pending age and failing=1;
        rows the database refused on their own as quarantined."""
        health = self.recorder.health()
        yield CounterMetricFamily("cors_log_flush_failures", "Failed request log flushes",
                                  value=health.flush_failures)
        yield CounterMetricFamily(
            "cors_log_overflow", "Refusals counted only in the overflow row because the "
            "in-memory key bound was reached", value=self.recorder.overflow_total)
        yield GaugeMetricFamily("cors_log_pending_keys", "Request log keys waiting for a flush",
                                value=health.pending_keys)
        yield GaugeMetricFamily("cors_log_pending_events",
                                "Refusals waiting in memory for a flush",
                                value=health.pending_events)
        yield GaugeMetricFamily("cors_log_oldest_pending_age_seconds",
                                "Age of the oldest refusal not yet written (0 when none)",
                                value=health.oldest_pending_age(time.time()))
        yield GaugeMetricFamily("cors_log_flush_failing",
                                "1 while request log flushes fail, else 0",
                                value=1 if health.degraded else 0)
        yield CounterMetricFamily("cors_log_quarantined_rows",
                                  "Request log rows dropped because the database refused "
                                  "them on their own", value=health.quarantined_rows)
        yield CounterMetricFamily("cors_log_quarantined_events",
                                  "Refusals in the quarantined rows",
                                  value=health.quarantined_events)
