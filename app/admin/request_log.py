"""Request log: refused origins and failed preflights, aggregated, filtered, exported.

Filters are a GET form (htmx swaps only the results and pushes the URL); the CSV export takes
the same query string. Reading goes through :mod:`app.services.request_log` on indexed
columns, with a count that stops at :data:`COUNT_LIMIT`, so the page stays fast on a log of
millions of rows. The page is grouped by origin by default (or by rule or reason; ``group=none``
shows the hourly rows), each group with a trend over the period. An ``origin-not-allowed``
row offers editors one click that applies the simulator's whole fix to its recorded request;
a method, header or credentials refusal links to the rule's form with the change filled in
(:mod:`app.services.log_fixes`). Every value of a row came from a request, so it
is attacker-controlled: templates only ever show it as escaped text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app, flash, redirect, request, stream_with_context, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from cors_control import get_control
from cors_control.decision import EXPLANATIONS, ORIGIN_NOT_ALLOWED
from cors_control.snapshot import PolicySnapshot
from cors_control.text import escape_unprintable
from cors_control.vocabulary import DRAFT, LOG_MODES, NO_TENANT_SOURCE

from ..extensions import db
from ..models import RequestLogEntry, Rule, RuleOriginList
from ..services.access import visible_log_rows, visible_rules
from ..services.errors import FieldError, NotFound, ValidationError
from ..services.limits import MAX_ID, whole_number
from ..services.list_fix import ListTarget
from ..services.log_fixes import (
    RULE_TARGET,
    allow_from_log,
    describe,
    edit_args,
    log_list_targets,
)
from ..services.request_log import (
    GROUPS,
    MAX_PAGE_SIZE,
    REASONS,
    SORTS,
    GroupPage,
    LogFilter,
    entry_to_dict,
    group_log,
    iter_log,
    query_log,
    validate_filter,
    validate_grouping,
)
from ..services.simulator import allows_origin_now, one_click_refusal
from . import bp
from .access import current_actor, has_role, requires
from .paging import page_arg
from .refusals import rule_link
from .rendering import is_htmx, render

SINCE_PRESETS = ("1h", "24h", "7d", "30d")
CUSTOM = "custom"
DEFAULT_SINCE = "24h"
NO_RULE = "none"
DEFAULT_GROUP = "origin"
UNGROUPED = "none"  # the hourly rows themselves
DEFAULT_SORT = "count"
PER_PAGE = 50
# Counting stops past this many rows ("10,000+"): an exact count of a large period costs
# as much as reading it, and nobody pages that far.
COUNT_LIMIT = 10_000
# Spreadsheets run a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "first_seen", "last_seen", "bucket_start", "rule", "rule_id", "tenant", "origin", "reason",
    "detail", "mode", "count", "sample.method", "sample.path", "sample.preflight",
    "sample.request_method", "sample.request_headers", "sample.user_agent", "sample.referer",
)


# -- the filters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogQuery:
    """The filter form as submitted; ``rule`` is a rule id, ``none`` or a rule path."""

    since: str = DEFAULT_SINCE
    since_custom: str = ""
    rule: str = ""
    reason: str = ""
    mode: str = ""
    origin: str = ""
    origin_is: str = ""  # exactly this origin: one origin group's rows
    page: int = 1
    per_page: int = PER_PAGE
    group: str = DEFAULT_GROUP
    sort: str = DEFAULT_SORT

    @classmethod
    def from_args(cls, args: MultiDict[str, str]) -> LogQuery:
        since = args.get("since", DEFAULT_SINCE)
        custom = args.get("since_custom", "")
        if since not in SINCE_PRESETS and since != CUSTOM:
            since, custom = CUSTOM, since  # a link may carry any duration: ?since=90m
        per_page = page_arg(args, "per_page", PER_PAGE)
        return cls(
            since=since,
            since_custom=custom.strip() if since == CUSTOM else "",
            rule=args.get("rule", "").strip(),
            reason=args.get("reason", ""),
            mode=args.get("mode", ""),
            origin=args.get("origin", ""),
            origin_is=args.get("origin_is", ""),
            page=page_arg(args),
            per_page=max(1, min(per_page, MAX_PAGE_SIZE)),
            group=args.get("group", DEFAULT_GROUP) or DEFAULT_GROUP,
            sort=args.get("sort", DEFAULT_SORT) or DEFAULT_SORT,
        )

    @property
    def grouped(self) -> bool:
        return self.group != UNGROUPED

    def filters(self) -> LogFilter:
        """The service's filter; its validation errors name the form's fields."""
        rule_path: str | None = None
        rule_id: int | None = None
        if self.rule == NO_RULE:
            rule_path = ""
        elif (number := whole_number(self.rule)) is not None:
            if number > MAX_ID:
                raise ValidationError([FieldError("rule", "choose a rule from the list")])
            rule_id = number
        elif self.rule.startswith("/"):
            rule_path = self.rule
        elif self.rule:
            raise ValidationError([FieldError("rule", "choose a rule from the list")])
        # An empty custom period means everything the log keeps.
        since = self.since_custom if self.since == CUSTOM else self.since
        filters = validate_filter(since=since, rule=rule_path, rule_id=rule_id,
                                  reason=self.reason, mode=self.mode, origin=self.origin)
        if self.grouped:
            validate_grouping(self.group, self.sort)
        elif self.group != UNGROUPED:
            raise ValidationError([FieldError("group", "group by origin, rule or reason")])
        return replace(filters, exact_origin=self.origin_is) if self.origin_is else filters

    def group_args(self, group_by: str, key: str) -> dict[str, Any]:
        """The query string of one group's hourly rows: these filters and the group's key."""
        narrowed: dict[str, Any] = {"group": UNGROUPED, "page": 1}
        if group_by == "origin":
            narrowed["origin_is"] = key
        elif group_by == "rule":
            narrowed["rule"] = key or NO_RULE
        else:
            narrowed["reason"] = key
        return self.as_args(**narrowed)

    def as_args(self, **changes: Any) -> dict[str, Any]:
        """The query string of these filters (defaults left out), for links."""
        query = replace(self, **changes)
        args: dict[str, Any] = {}
        if query.since != DEFAULT_SINCE:
            args["since"] = query.since
        if query.since == CUSTOM:
            args["since_custom"] = query.since_custom
        for name in ("rule", "reason", "mode", "origin", "origin_is"):
            if getattr(query, name):
                args[name] = getattr(query, name)
        if query.page != 1:
            args["page"] = query.page
        if query.per_page != PER_PAGE:
            args["per_page"] = query.per_page
        if query.group != DEFAULT_GROUP:
            args["group"] = query.group
        if query.sort != DEFAULT_SORT:
            args["sort"] = query.sort
        return args


# -- rows ----------------------------------------------------------------------------------

DRAFT_ROW = ("the live rule allowed these requests and only its draft would refuse them; "
             "keep the origin in the draft on the rule's page, or discard the draft")


class RuleNow(NamedTuple):
    """A rule as it is today: the filter's choices, and what rows link to."""

    path: str
    selects_tenant: bool


@dataclass(frozen=True, slots=True)
class LogRow:
    """One aggregated row and what the page says about it today."""

    entry: RequestLogEntry
    rule_href: str | None = None
    rule_now: str | None = None  # the rule's path today, when it was renamed since
    allowed_now: bool = False  # the origin has been allowed on the rule since
    offer: bool = False  # one click may allow the origin on the rule
    refusal: str | None = None  # why one click is not offered
    edit_href: str | None = None  # the rule's edit form with this row's change filled in
    edit_text: str = ""
    # the shared lists one click may add the origin to instead (each with the rules it changes)
    lists: tuple[ListTarget, ...] = ()

    @property
    def explanation(self) -> str:
        return EXPLANATIONS.get(self.entry.reason, "")


def log_rows(entries: Iterable[RequestLogEntry], rules: dict[int, RuleNow],
             snapshot: PolicySnapshot | None) -> list[LogRow]:
    """Rows for the table from data already loaded: no query per row."""
    entries = list(entries)
    wanted = {entry.rule_id for entry in entries} if snapshot else set()
    compiled = {rule.rule_id: rule for rule in snapshot.rules if rule.rule_id in wanted} \
        if snapshot and wanted else {}
    rows = []
    for entry in entries:
        now = rules.get(entry.rule_id) if entry.rule_id is not None else None
        fields: dict[str, Any] = {}
        if now is not None:
            fields["rule_href"] = rule_link(entry.rule_id)
            fields["rule_now"] = now.path if now.path != entry.rule_path else None
        if entry.mode == DRAFT:
            # The live rule allowed these requests: allowing the origin on it changes nothing.
            fields["refusal"] = DRAFT_ROW
        elif entry.reason == ORIGIN_NOT_ALLOWED and now is not None:
            refusal = one_click_refusal(entry.origin, selects_tenant=now.selects_tenant,
                                        tenant=entry.tenant)
            if allows_origin_now(snapshot, compiled.get(entry.rule_id), entry.origin,
                                 tenant=entry.tenant):
                fields["allowed_now"] = True
            elif refusal is None:
                fields["offer"] = True
            else:
                fields["refusal"] = refusal
        elif now is not None and (args := edit_args(entry)) is not None \
                and fields.get("rule_href"):
            fields["edit_href"] = url_for("admin.rule", rule_id=entry.rule_id,
                                          _anchor="rule-detail", **args)
            fields["edit_text"] = describe(entry)
        rows.append(LogRow(entry, **fields))
    return _with_list_targets(rows, snapshot)


def _with_list_targets(rows: list[LogRow], snapshot: PolicySnapshot | None) -> list[LogRow]:
    """Offer the shared lists of each offered row's rule as targets too: the simulator is
    asked only for rows whose rule uses a list (one query finds them), and only for a user
    who may change something."""
    actor = current_actor()
    offered = [row for row in rows if row.offer]
    if not offered or actor is None or not actor.can_write:
        return rows
    with_lists = set(db.session.scalars(sa.select(RuleOriginList.rule_id).where(
        RuleOriginList.rule_id.in_({row.entry.rule_id for row in offered}))))
    if not with_lists:
        return rows
    routes = get_control(current_app)
    return [replace(row, lists=tuple(log_list_targets(row.entry, snapshot, actor=actor,
                                                      routes=routes)))
            if row.offer and row.entry.rule_id in with_lists else row for row in rows]


# -- views ---------------------------------------------------------------------------------


@bp.get("/log")
@requires("viewer")
def request_log():
    return render("admin/request_log.html", "admin/_log_results.html",
                  **_log_context(LogQuery.from_args(request.args)))


@bp.get("/log.csv")
@requires("viewer")
def request_log_csv():
    """The filtered rows (every page) as CSV, streamed."""
    try:
        filters = LogQuery.from_args(request.args).filters()
    except ValidationError as error:
        return Response(f"{error}\n", status=400, mimetype="text/plain")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Response(
        stream_with_context(csv_lines(iter_log(filters, actor=current_actor()))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="cors-request-log-{stamp}.csv"'},
    )


@bp.post("/log/<int:entry_id>/allow")
@requires("editor")
def request_log_allow(entry_id: int):
    """Let the refused request of an ``origin-not-allowed`` row through on a target (the
    row's rule): the simulator's whole fix of the recorded request, audited by the policy
    service, and served by this process at once."""
    entry = db.first_or_404(sa.select(RequestLogEntry).where(
        RequestLogEntry.id == entry_id, visible_log_rows(current_actor())))
    control = get_control(current_app)
    try:
        message = allow_from_log(entry, control.cache.get(),
                                 target=request.form.get("target", RULE_TARGET),
                                 actor=current_actor(), routes=control)
    except (NotFound, ValidationError) as error:
        message, category = f"{entry.origin} was not allowed: {error}.", "error"
    else:
        category = ""
        control.cache.refresh()
    if not is_htmx():
        flash(message, category)
        return redirect(_back_to_log(request.form.get("next", "")), code=303)
    (row,) = log_rows([entry], _rules_now(ids=[entry.rule_id]),
                      get_control(current_app).cache.get())
    return render("admin/_log_row.html", row=row, message=message, message_category=category,
                  can_edit=True, next_url=request.form.get("next", ""))


# The rule filter lists this many rules; more are reached by search or a rule's own page.
RULE_CHOICES = 300


# -- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One group of the grouped view: its sums, its trend as a sparkline, its newest row
    (the sample, and the fix it offers) and the link to its hourly rows."""

    group: Any
    sample: LogRow | None
    href: str
    points: str
    trend_text: str


SPARK_WIDTH, SPARK_HEIGHT = 120, 24


def sparkline_points(trend: tuple[int, ...] | list[int]) -> str:
    """The ``points`` of an SVG polyline drawing *trend* in a SPARK_WIDTH × SPARK_HEIGHT box,
    the highest count at the top."""
    if not trend:
        return ""
    top = max(trend) or 1
    step = SPARK_WIDTH / max(len(trend) - 1, 1)
    return " ".join(f"{index * step:.1f},{SPARK_HEIGHT - 1 - count / top * (SPARK_HEIGHT - 2):.1f}"
                    for index, count in enumerate(trend))


def _group_rows(query: LogQuery, grouped: GroupPage) -> list[GroupRow]:
    ids = [group.sample_id for group in grouped.groups]
    samples = db.session.scalars(sa.select(RequestLogEntry).where(
        RequestLogEntry.id.in_(ids))).all() if ids else []
    rows = log_rows(samples, _rules_now(ids=[e.rule_id for e in samples
                                             if e.rule_id is not None]),
                    get_control(current_app).cache.get())
    by_id = {row.entry.id: row for row in rows}
    hours = grouped.bucket_seconds / 3600
    per = f"{hours:.3g} hour" + ("" if f"{hours:.3g}" == "1" else "s")
    return [GroupRow(
        group, by_id.get(group.sample_id),
        url_for("admin.request_log", **query.group_args(grouped.group_by, group.key)),
        sparkline_points(group.trend),
        f"{group.count:,} in {len(group.trend)} periods of {per}, oldest first: "
        + ", ".join(str(count) for count in group.trend),
    ) for group in grouped.groups]


def _log_context(query: LogQuery) -> dict[str, Any]:
    """Everything request_log.html and its partials need, built in one place."""
    errors: dict[str, str] = {}
    entries: list[RequestLogEntry] = []
    groups: list[GroupRow] = []
    total = 0
    try:
        filters = query.filters()
    except ValidationError as error:
        errors = {e.field: e.message for e in error.errors}
    else:
        if query.grouped:
            grouped = group_log(filters, group_by=query.group, sort=query.sort,
                                page=query.page, per_page=query.per_page,
                                actor=current_actor())
            total = grouped.total
            groups = _group_rows(query, grouped)
        else:
            entries, total = query_log(filters, page=query.page, per_page=query.per_page,
                                       count_limit=COUNT_LIMIT + 1, actor=current_actor())
    rules = _rules_now(ids=[e.rule_id for e in entries if e.rule_id is not None])
    choices = _rules_now(limit=RULE_CHOICES)
    more = total > COUNT_LIMIT
    return {
        "query": query,
        "errors": errors,
        "rows": log_rows(entries, rules, get_control(current_app).cache.get()),
        "total_text": f"{COUNT_LIMIT:,}+" if more else f"{total:,}",
        "total": total,
        "has_previous": query.page > 1,
        "has_next": len(groups or entries) == query.per_page
        and (more or query.page * query.per_page < total),
        "groups": groups,
        "group_choices": GROUPS,
        "ungrouped": UNGROUPED,
        "sorts": SORTS,
        "spark_width": SPARK_WIDTH,
        "spark_height": SPARK_HEIGHT,
        "rule_paths": {rule_id: rule.path for rule_id, rule in choices.items()},
        "since_presets": SINCE_PRESETS,
        "custom": CUSTOM,
        "no_rule": NO_RULE,
        "reasons": REASONS,
        "modes": LOG_MODES,
        "can_edit": has_role("editor"),
        "next_url": request.full_path.rstrip("?"),
    }


def _rules_now(*, ids: list[int] | None = None, limit: int | None = None
               ) -> dict[int, RuleNow]:
    """Rules the signed-in user may see, by id, in path order, in one query: those of the
    page's rows (*ids*), or the first *limit* for the filter's choices (a large installation
    has thousands; the rule filter also takes a rule id typed in the URL)."""
    query = sa.select(Rule.id, Rule.path, Rule.tenant_source) \
        .where(visible_rules(current_actor())).order_by(Rule.path)
    if ids is not None:
        if not ids:
            return {}
        query = query.where(Rule.id.in_(set(ids)))
    if limit is not None:
        query = query.limit(limit)
    return {rule_id: RuleNow(path, source != NO_TENANT_SOURCE)
            for rule_id, path, source in db.session.execute(query)}


def _back_to_log(next_url: str) -> str:
    """The log page the form was on, filters included; never another site or page."""
    parts = urlsplit(next_url)
    home = url_for("admin.request_log")
    if parts.scheme or parts.netloc or parts.path != home:
        return home
    return f"{home}?{parts.query}" if parts.query else home


def csv_lines(entries: Iterable[RequestLogEntry], *, batch: int = 500) -> Iterator[str]:
    """CSV text in chunks, header first; cells a spreadsheet would run are neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for index, entry in enumerate(entries, start=1):
        # The service's representation has no tenant yet; the export carries it.
        data = {**entry_to_dict(entry), "tenant": entry.tenant}
        writer.writerow([_csv_cell(_lookup(data, column)) for column in CSV_COLUMNS])
        if index % batch == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # Recorded from requests: no raw control character reaches the file, and no cell
        # starts a formula in a spreadsheet.
        value = escape_unprintable(value)
        if value.startswith(FORMULA_PREFIXES):
            return "'" + value
    return value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
