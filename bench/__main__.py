"""``python -m bench [section ...] [--quick]``: run benchmark sections, print, save JSON.

A section is a function taking a :class:`~bench.harness.Budget`, printing its report and
returning JSON-ready results; add one to :data:`SECTIONS` to make it runnable.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from . import (
    control_plane,
    dashboard,
    edits,
    engine,
    fleet,
    flood,
    reload,
    tenants,
    throughput,
)
from .harness import Budget
from .report import describe_environment, environment, write_json

Section = Callable[[Budget], dict[str, object]]

SECTIONS: dict[str, Section] = {
    "engine": engine.run,
    "flood": flood.run,
    "dashboard": dashboard.run,
    "edits": edits.run,
    "tenants": tenants.run,
    "fleet": fleet.run,
    "gunicorn": throughput.run,
    "control-plane": control_plane.run,
    "reload": reload.run,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmark sections, print their figures and save them as JSON.",
    )
    parser.add_argument("sections", nargs="*", metavar="section",
                        help=f"sections to run (default: all): {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true",
                        help="tiny iteration counts, to check the bench runs; figures are noise")
    args = parser.parse_args(argv)
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        parser.error(f"no section named {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    budget = Budget.quick() if args.quick else Budget.full()
    names = args.sections or list(SECTIONS)

    env = environment()
    print(describe_environment(env))
    if args.quick:
        print("--quick: smoke test only, the figures below mean nothing")
    results: dict[str, object] = {}
    started = time.perf_counter()
    for name in names:
        print()
        results[name] = SECTIONS[name](budget)
    elapsed = time.perf_counter() - started
    env["seconds"] = round(elapsed, 1)
    path = write_json("quick.json" if args.quick else "latest.json",
                      {"environment": env, "quick": args.quick, "sections": results})
    print()
    print(f"finished in {elapsed:.0f} s; results written to {path}")


if __name__ == "__main__":
    main()
