"""Prometheus metrics: decisions by rule and reason, log health, the policy version loaded.

Counting is a dict increment on the request path; the Prometheus families are built only when
``/metrics`` is scraped. There is no origin label: label cardinality stays bounded by the
number of rules and reason codes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..cors.cache import PolicyCache
from ..cors.decision import ALLOWED, NO_ORIGIN, Decision
from .recorder import RequestLogRecorder


class DecisionCounters:
    """Engine listener counting every decision on a governed route (and unmatched CORS
    requests) by (rule, decision, reason)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def observe(self, decision: Decision, request: object) -> None:
        if decision.reason == NO_ORIGIN:
            outcome = "not-cors"
        elif decision.report_only:
            outcome = "report-only"
        else:
            outcome = "allowed" if decision.allowed else "refused"
        rule = decision.rule.path if decision.rule is not None else ""
        key = (rule, outcome, decision.reason if decision.reason != ALLOWED else "")
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)


class CorsCollector(Collector):
    def __init__(self, counters: DecisionCounters, recorder: RequestLogRecorder,
                 cache: PolicyCache) -> None:
        self.counters = counters
        self.recorder = recorder
        self.cache = cache

    def collect(self) -> Iterator:
        requests = CounterMetricFamily(
            "cors_requests", "Requests decided by the CORS engine",
            labels=["rule", "decision", "reason"])
        for (rule, outcome, reason), count in sorted(self.counters.snapshot().items()):
            requests.add_metric([rule, outcome, reason], count)
        yield requests
        yield CounterMetricFamily("cors_log_flush_failures", "Failed request log flushes",
                                  value=self.recorder.flush_failures)
        yield CounterMetricFamily(
            "cors_log_overflow", "Refusals counted only in the overflow row because the "
            "in-memory key bound was reached", value=self.recorder.overflow_total)
        yield GaugeMetricFamily("cors_log_pending_keys", "Request log keys waiting for a flush",
                                value=self.recorder.pending_keys)
        status = self.cache.status()
        yield GaugeMetricFamily("cors_policy_version", "Policy version loaded by this process "
                                "(-1 when none)", value=-1 if status.version is None
                                else status.version)
        yield GaugeMetricFamily("cors_policy_last_check_timestamp_seconds",
                                "When this process last checked the policy version",
                                value=status.last_check or 0)
