"""Benchmarks for CORS Control: ``python -m bench [section ...] [--quick]``.

Timings belong here, never in tests. The machine that runs them is shared and noisy, so every
figure is a median of per-round means, and every comparison is against a baseline measured
in the same run, interleaved round-robin with the variants it is compared to.
"""
