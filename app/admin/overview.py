"""Overview: rules, origins and processes at a glance, and refusals over the last day."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from ..services.overview import PROCESS_HORIZON, RefusalChart, duration_text, load_overview
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
                  overview=data, chart=chart_layout(data.chart),
                  reasons=reasons_layout(data.chart), stranded=stranded,
                  horizon=duration_text(int(PROCESS_HORIZON.total_seconds())))


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


REASONS_WIDTH = 720
REASON_ROW = 28
REASON_LABEL_RIGHT, REASON_BAR_LEFT, REASON_BAR_RIGHT = 196, 204, 640


@dataclass(frozen=True, slots=True)
class ReasonBar:
    reason: str
    y: float  # top of the row
    text_y: float
    enforce_width: float
    report_only_x: float
    report_only_width: float
    total: int
    total_x: float
    label: str  # tooltip


@dataclass(frozen=True, slots=True)
class ReasonsLayout:
    width: int
    height: int
    label_right: float
    bar_left: float
    row: float
    bars: list[ReasonBar]
    description: str


def reasons_layout(chart: RefusalChart) -> ReasonsLayout:
    """One horizontal bar per reason (enforce, then report-only), scaled to the largest."""
    reasons = chart.reasons
    scale = max((reason.total for reason in reasons), default=1) or 1
    span = REASON_BAR_RIGHT - REASON_BAR_LEFT
    bars = []
    for index, reason in enumerate(reasons):
        enforce = round(span * reason.enforce / scale, 2)
        report_only = round(span * reason.report_only / scale, 2)
        y = index * REASON_ROW
        bars.append(ReasonBar(
            reason=reason.reason, y=y + 4, text_y=y + REASON_ROW / 2 + 4,
            enforce_width=enforce, report_only_x=REASON_BAR_LEFT + enforce,
            report_only_width=report_only, total=reason.total,
            total_x=REASON_BAR_LEFT + enforce + report_only + 6,
            label=(f"{reason.reason}: {reason.enforce} refused, {reason.report_only} would "
                   "be refused (report-only), last 24 hours"),
        ))
    description = "; ".join(f"{reason.reason} {reason.total}" for reason in reasons)
    return ReasonsLayout(width=REASONS_WIDTH, height=max(1, len(reasons)) * REASON_ROW + 8,
                         label_right=REASON_LABEL_RIGHT, bar_left=REASON_BAR_LEFT,
                         row=REASON_ROW, bars=bars,
                         description=f"Refused requests by reason: {description}."
                         if reasons else "No refused requests.")


def _nice_ceiling(value: int) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least *value* (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)
