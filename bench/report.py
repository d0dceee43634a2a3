"""Plain-text tables, the run's environment, and the JSON results file."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Right-aligned columns, the first left-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return indent + "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


def us(value: float) -> str:
    return f"{value:,.1f}"


def signed_us(value: float) -> str:
    return f"{value:+,.1f}"


def ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def count(value: int) -> str:
    return f"{value:,}"


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def environment() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "flask": version("flask"),
        "werkzeug": version("werkzeug"),
        "flask_cors": version("flask-cors"),
        "argv": sys.argv[1:],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def describe_environment(env: dict[str, object]) -> str:
    return (
        f"Python {env['python']} ({env['implementation']}), Flask {env['flask']}, "
        f"Werkzeug {env['werkzeug']}, flask-cors {env['flask_cors']}, {env['cpus']} CPUs, "
        f"{env['platform']}"
    )


def write_json(name: str, results: dict[str, object]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    # NaN is not JSON; write null instead.
    path.write_text(json.dumps(_finite(results), indent=2) + "\n")
    return path


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
