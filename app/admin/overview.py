"""Overview: rules, origins and processes at a glance, and refusals over the last day."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from ..services.overview import RefusalChart, load_overview
from ..services.tenants import rules_outside_namespaces
from . import bp
from .access import current_actor, requires
from .rendering import render

CHART_WIDTH = 720
CHART_HEIGHT = 220
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 48, 8, 14, 44
TICK_EVERY_HOURS = 3


@bp.get("/")
@requires("viewer")
def overview():
    actor = current_actor()
    data = load_overview(actor=actor)
    # Tenant rules left outside their namespaces may govern platform routes: admins fix them.
    stranded = rules_outside_namespaces() if actor.role == "admin" else []
    return render("admin/overview.html", "admin/_overview.html",
                  overview=data, chart=chart_layout(data.chart), stranded=stranded)


# -- the bar chart, laid out here so the template only places elements ------------------------


@dataclass(frozen=True, slots=True)
class ChartBar:
    x: float
    width: float
    center: float
    enforce_y: float
    enforce_height: float
    report_only_y: float
    report_only_height: float
    label: str  # tooltip and table row
    hour_label: str  # "14:00"
    tick: bool  # whether the hour is written under the axis


@dataclass(frozen=True, slots=True)
class ChartLayout:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float  # y of the baseline
    y_ticks: list[tuple[float, str]]
    bars: list[ChartBar]
    description: str


def chart_layout(chart: RefusalChart) -> ChartLayout:
    """Stacked bars (enforce below, report-only above) in SVG user units."""
    plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    plot_height = CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    baseline = PLOT_TOP + plot_height
    scale = _nice_ceiling(chart.peak.total)
    slot = plot_width / len(chart.hours)

    def height(count: int) -> float:
        return round(plot_height * count / scale, 2)

    bars = []
    for index, hour in enumerate(chart.hours):
        enforce, report_only = height(hour.enforce), height(hour.report_only)
        end = hour.start + timedelta(hours=1)
        bars.append(ChartBar(
            x=round(PLOT_LEFT + index * slot + slot * 0.15, 2),
            width=round(slot * 0.7, 2),
            center=round(PLOT_LEFT + (index + 0.5) * slot, 2),
            enforce_y=round(baseline - enforce, 2),
            enforce_height=enforce,
            report_only_y=round(baseline - enforce - report_only, 2),
            report_only_height=report_only,
            label=(f"{hour.start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC: {hour.enforce} refused, "
                   f"{hour.report_only} would be refused (report-only)"),
            hour_label=f"{hour.start:%H:%M}",
            tick=hour.start.hour % TICK_EVERY_HOURS == 0,
        ))
    ticks = [(round(baseline - plot_height * value / scale, 2),
              str(int(value)) if float(value).is_integer() else str(value))
             for value in (0, scale / 2, scale)]
    peak = chart.peak
    description = (
        f"{len(chart.hours)} hourly bars from {chart.hours[0].start:%Y-%m-%d %H:%M} UTC; "
        f"{chart.total} refused requests in total"
        + (f"; the busiest hour, {peak.start:%H:%M} UTC, had {peak.total}."
           if peak.total else ".")
    )
    return ChartLayout(width=CHART_WIDTH, height=CHART_HEIGHT, left=PLOT_LEFT,
                       right=CHART_WIDTH - PLOT_RIGHT, top=PLOT_TOP, bottom=baseline,
                       y_ticks=ticks, bars=bars, description=description)


def _nice_ceiling(value: int) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least *value* (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)
