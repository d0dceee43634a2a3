"""Round-robin timing: every case runs once per round, time-boxed, in a shuffled order.

A case's figure is the median over rounds of its mean time per call in that round. Slow cases
run fewer calls per round (the time box), never fewer rounds, so noise on the shared machine
lands on every case alike. Rounds are short and many: a burst of load from a neighbour then
spoils a few rounds of every case rather than all the rounds of one, and the median drops
them. Comparisons pair a case with its baseline round by round.

Time is the CPU time of the benchmarking thread (:func:`time.thread_time`): on a shared
machine, the time the scheduler hands to other processes is not charged to the case that
happened to be running. Contention still shows (caches, memory bandwidth), only less.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

clock = time.thread_time


@dataclass(frozen=True, slots=True)
class Budget:
    """How long to measure: *rounds* rounds of *time_box* seconds per case, after *warmup*
    seconds per case; slow one-off work (compiling a policy) is repeated *repeats* times.
    A *smoke* budget (``--quick``) only checks that a section runs: sections may also shrink
    their data sets for it."""

    rounds: int
    time_box: float
    warmup: float
    repeats: int
    smoke: bool = False

    @classmethod
    def full(cls) -> Budget:
        return cls(rounds=300, time_box=0.012, warmup=0.2, repeats=3)

    @classmethod
    def quick(cls) -> Budget:
        return cls(rounds=3, time_box=0.003, warmup=0.003, repeats=1, smoke=True)


@dataclass(frozen=True, slots=True)
class Case:
    """One thing to time; *call* does it once."""

    name: str
    call: Callable[[], object]


@dataclass(frozen=True, slots=True)
class Samples:
    """The per-round means of one case, in µs per call."""

    name: str
    per_round: tuple[float, ...]
    calls_per_round: int

    @property
    def median(self) -> float:
        return statistics.median(self.per_round)

    @property
    def relative_spread(self) -> float:
        """Interquartile range over the median: how noisy this case was."""
        if len(self.per_round) < 4:
            return float("nan")
        q1, _, q3 = statistics.quantiles(self.per_round, n=4)
        return (q3 - q1) / self.median

    def as_json(self) -> dict[str, object]:
        return {
            "median_us": self.median,
            "relative_iqr": self.relative_spread,
            "calls_per_round": self.calls_per_round,
            "per_round_us": list(self.per_round),
        }


def measure(cases: Sequence[Case], budget: Budget) -> dict[str, Samples]:
    """Time every case, interleaved; returns samples by case name."""
    counts = {case.name: _calls_per_box(case.call, budget) for case in cases}
    means: dict[str, list[float]] = {case.name: [] for case in cases}
    # A fixed seed: the same orders every run. Shuffled so no case always follows the same
    # neighbour (a slow neighbour leaves caches and the collector in its own state).
    shuffler = random.Random(0)
    order = list(cases)
    for _ in range(budget.rounds):
        shuffler.shuffle(order)
        for case in order:
            calls = counts[case.name]
            means[case.name].append(_time_calls(case.call, calls) / calls * 1e6)
    return {
        case.name: Samples(case.name, tuple(means[case.name]), counts[case.name])
        for case in cases
    }


def paired_difference(case: Samples, baseline: Samples) -> float:
    """Median over rounds of (case − baseline) measured in the same round, in µs."""
    return statistics.median(a - b for a, b in zip(case.per_round, baseline.per_round,
                                                   strict=True))


def paired_ratio(case: Samples, baseline: Samples) -> float:
    """Median over rounds of case / baseline measured in the same round."""
    return statistics.median(a / b for a, b in zip(case.per_round, baseline.per_round,
                                                   strict=True))


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Everything built so far lives as long as the run: keep it out of the collector's way
    (:func:`gc.freeze`), so a full collection costs the same whichever case triggers it."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def time_once(call: Callable[[], object]) -> float:
    """CPU seconds one call takes (for slow, off-request-path work such as compiling)."""
    start = clock()
    call()
    return clock() - start


def _calls_per_box(call: Callable[[], object], budget: Budget) -> int:
    """Warm *call* up and return how many calls fill one time box (at least one)."""
    calls = 0
    start = clock()
    while calls < 3 or clock() - start < budget.warmup:
        call()
        calls += 1
    per_call = (clock() - start) / calls
    return max(1, round(budget.time_box / per_call))


def _time_calls(call: Callable[[], object], calls: int) -> float:
    start = clock()
    for _ in range(calls):
        call()
    return clock() - start
