"""``flask cors ...``: export, import, check and inspect the CORS policy from the command line."""

from __future__ import annotations

import json
import math
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from cors_control import get_control
from cors_control.text import printable
from cors_control.vocabulary import DRAFT, LOG_MODES

from ..services.errors import ServiceError
from ..services.impact import Impact, import_impact
from ..services.limits import MAX_JSON_DEPTH, MAX_LOOKBACK, nesting_exceeds
from ..services.origin_find import find_origin
from ..services.policy import import_policy, purge_expired_origins
from ..services.policy_read import export_policy
from ..services.request_log import (
    GROUPS,
    MAX_PAGE_SIZE,
    SORTS,
    GroupPage,
    entry_to_dict,
    group_log,
    group_to_dict,
    prune_log,
    query_log,
    validate_filter,
)
from ..services.simulator import answer_request, parse_header_line, validate_request
from .common import cli_actor, fail, print_table
from .origin_lists import lists_group

cors_group = AppGroup("cors", help="Manage and inspect the CORS policy.")
cors_group.add_command(lists_group)


@cors_group.command("export")
@click.option("-o", "--output", type=click.File("w"), default="-", help="File (default stdout).")
def export_command(output) -> None:
    """Print the policy as JSON, sorted, so two exports diff cleanly."""
    json.dump(export_policy(), output, indent=2, sort_keys=True)
    output.write("\n")


@cors_group.command("import")
@click.argument("file", type=click.File("r"))
@click.option("--replace", is_flag=True, help="Delete rules that are not in FILE.")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
def import_command(file, replace: bool, dry_run: bool) -> None:
    """Create or overwrite the rules in FILE (matched by path), all or nothing."""
    text = file.read()
    if nesting_exceeds(text.encode(), MAX_JSON_DEPTH):
        click.echo(f"Error: {file.name} nests arrays or objects more than {MAX_JSON_DEPTH} "
                   "deep; a policy file needs 4. Nothing was written.", err=True)
        sys.exit(1)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        click.echo(f"Error: {file.name} is not valid JSON: {exc}. Nothing was written.", err=True)
        sys.exit(1)
    try:
        result = import_policy(document, actor=cli_actor(), replace=replace, dry_run=dry_run)
        impact = import_impact(document, replace=replace, actor=cli_actor()) \
            if dry_run else None
    except ServiceError as exc:
        fail(exc)
        return
    verb = "would be" if dry_run else "were"
    for label, names in (("added", result.added), ("removed", result.removed)):
        for name in names:
            click.echo(f"{'+' if label == 'added' else '-'} {name}")
    for name, fields in sorted(result.changed.items()):
        click.echo(f"~ {name} ({', '.join(fields)})")
    for label, slugs in (("tenants created", result.tenants_added),
                         ("tenant namespaces changed", result.tenants_changed),
                         ("origin lists created", result.lists_added),
                         ("origin lists changed", result.lists_changed)):
        if slugs:
            click.echo(f"{label}: {', '.join(slugs)}")
    click.echo(
        f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} "
        f"removed, {len(result.unchanged)} unchanged ({verb} written"
        + ("" if dry_run else f"; policy version {result.policy_version}") + ")"
    )
    if impact is not None:
        for line in impact_lines(impact):
            click.echo(line)


def impact_lines(impact: Impact) -> list[str]:
    """What a change takes away and gives, route by route, for the terminal."""
    if not impact.routes:
        return ["No route changes what it allows."]
    lines = [f"{len(impact.routes)} route(s) change what they allow"
             + (f"; {len(impact.losing)} lose something:" if impact.takes_away else ":")]
    for route in impact.routes:
        was = route.before.text if route.before else "no rule"
        now = route.after.text if route.after else "no rule"
        lines.append(f"  {route.route}: {was} -> {now}" if route.moves
                     else f"  {route.route}: {now}")
        if route.takes_away:
            lines.append(f"    loses: {', '.join(route.lost.items())}")
        if not route.gained.empty:
            lines.append(f"    gains: {', '.join(route.gained.items())}")
    return lines


@cors_group.command("check")
@click.argument("origin")
@click.argument("path")
@click.option("--method", "-m", default="GET", show_default=True)
@click.option("--header", "-H", "headers", multiple=True, help="A request header name (repeat).")
@click.option("--request-header", "request_headers", multiple=True, metavar="NAME=VALUE",
              help="A header the script sets, with its value, such as X-Tenant=acme (repeat).")
@click.option("--host", default="", help="The Host header, such as acme.api.example.com.")
@click.option("--credentials", is_flag=True, help="The request carries cookies.")
@click.option("--private-network", is_flag=True,
              help="The preflight asks for private network access.")
@click.option("--preflight/--no-preflight", default=None,
              help="Default: preflight when the method or a header needs one.")
def check_command(origin: str, path: str, method: str, headers: tuple[str, ...],
                  request_headers: tuple[str, ...], host: str, credentials: bool,
                  private_network: bool, preflight: bool | None) -> None:
    """Show what the engine decides for ORIGIN calling PATH, every check that fails, and the
    headers it sends. The tenant is read as the server reads it: from the path (matched
    against the app's routes), a --request-header or the --host.

    Exits 0 when allowed, 1 when refused, 2 when the question is not valid or no policy
    could be loaded.
    """
    values = []
    for line in request_headers:
        pair = parse_header_line(line)
        if pair is None:
            click.echo(f"Error: --request-header {printable(line, 100)}: write NAME=VALUE, "
                       "such as X-Tenant=acme.", err=True)
            sys.exit(2)
        values.append(pair)
    validation = validate_request(origin=origin, method=method, path=path, header_names=headers,
                                  credentials=credentials, preflight=preflight,
                                  request_headers=values, host=host,
                                  private_network=private_network)
    if validation.request is None:
        for error in validation.errors:
            click.echo(f"Error: {printable(str(error))}", err=True)
        sys.exit(2)
    control = get_control(current_app)
    control.cache.refresh()
    if control.cache.snapshot is None:
        click.echo(f"Error: no policy could be loaded ({control.cache.last_error}).", err=True)
        sys.exit(2)
    answer = answer_request(validation.request, control.cache.snapshot, routes=control)
    result = answer.simulation
    assert result is not None  # the CLI is no tenant role: it sees every answer
    decision = result.decision
    kind = "preflight" if result.preflight else "request"
    click.echo(f"{result.verdict.upper()}: {kind} {result.method} {printable(result.path)} "
               f"from {printable(origin)}")
    click.echo(f"rule:    {decision.rule.path if decision.rule else '(none)'}")
    if decision.tenant is not None:
        click.echo(f"tenant:  {printable(decision.tenant, 100)}")
    click.echo(f"reason:  {decision.reason} - {printable(decision.explanation)}")
    for failure in answer.failures:
        click.echo(f"fails:   {failure.check} - {printable(failure.explanation)}")
    for finding in answer.findings:  # report-only rules change no answer
        rule_path = finding.rule.path if finding.rule else "(none)"
        click.echo(f"report-only: {rule_path} would refuse: {finding.reason} - "
                   f"{printable(finding.explanation)}")
    click.echo(f"policy:  version {answer.policy_version}")
    if decision.preflight:
        click.echo(f"status:  {decision.status}")
    click.echo("headers:" + ("" if decision.headers else " (none)"))
    for name, value in decision.headers:
        click.echo(f"  {name}: {printable(value)}")
    if answer.actual is not None:
        actual = answer.actual.decision
        click.echo(f"then:    {answer.actual.verdict.upper()}: request {result.method} - "
                   f"{actual.reason}")
        for name, value in actual.headers:
            click.echo(f"  {name}: {printable(value)}")
    if answer.fix is not None:
        click.echo(f"fix:     {printable(answer.fix.summary)} (the dashboard's simulator "
                   "applies it in one click)")
    elif answer.fix_refusal:
        click.echo(f"no fix:  {printable(answer.fix_refusal)}")
    for hint in answer.hints:
        click.echo(f"note:    {printable(hint)}")
    refused = not decision.allowed or (answer.actual is not None
                                       and not answer.actual.decision.allowed)
    if refused:
        sys.exit(1)


@cors_group.command("log")
@click.option("--since", default="24h", show_default=True, help="How far back: 30m, 1h, 7d.")
@click.option("--rule", help="Only this rule path (use '' for requests no rule governs).")
@click.option("--reason", help="Only this reason code, such as origin-not-allowed.")
@click.option("--mode", type=click.Choice(LOG_MODES))
@click.option("--origin", help="Only origins containing this text.")
@click.option("--limit", default=100, show_default=True, help=f"At most {MAX_PAGE_SIZE}.")
@click.option("--group", "group_by", type=click.Choice(GROUPS),
              help="One line per origin, rule or reason, largest count first.")
@click.option("--sort", type=click.Choice(SORTS), default="count", show_default=True,
              help="With --group: by total count or by last seen.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def log_command(since: str, rule: str | None, reason: str | None, mode: str | None,
                origin: str | None, limit: int, as_json: bool, group_by: str | None,
                sort: str) -> None:
    """Show refused origins and failed preflights, newest first (or grouped)."""
    try:
        filters = validate_filter(since=since, rule=rule, reason=reason, mode=mode,
                                  origin=origin)
    except ServiceError as exc:
        fail(exc)
        return
    if group_by is not None:
        _print_groups(group_log(filters, group_by=group_by, sort=sort, per_page=limit),
                      as_json=as_json)
        return
    rows, total = query_log(filters, per_page=limit)
    if as_json:
        json.dump({"total": total, "entries": [entry_to_dict(r) for r in rows]},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not rows:
        click.echo("No refusals recorded for these filters.")
        return
    table = [("LAST SEEN (UTC)", "COUNT", "MODE", "REASON", "RULE", "ORIGIN", "REQUEST")]
    for row in rows:
        reason_text = row.reason + (f" ({row.detail})" if row.detail else "")
        request_text = f"{row.method} {row.path}"
        if row.preflight:
            request_text = f"preflight {row.request_method} {row.path}"
        table.append((
            row.last_seen.strftime("%Y-%m-%d %H:%M:%S"), str(row.count), row.mode,
            printable(reason_text, 80), printable(row.rule_path, 40) or "(none)",
            printable(row.origin, 60), printable(request_text, 60),
        ))
    print_table(table)
    if any(row.mode == DRAFT for row in rows):
        click.echo("(mode draft: the live rule allowed these requests; only its draft would "
                   "refuse them)")
    if total > len(rows):
        click.echo(f"({len(rows)} of {total} rows; narrow the filters or raise --limit)")


def _print_groups(grouped: GroupPage, *, as_json: bool) -> None:
    if as_json:
        json.dump({"group": grouped.group_by, "sort": grouped.sort, "total": grouped.total,
                   "groups": [group_to_dict(g, grouped) for g in grouped.groups]},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not grouped.groups:
        click.echo("No refusals recorded for these filters.")
        return
    other = "ORIGINS" if grouped.group_by == "rule" else "ROUTES"
    table = [(grouped.group_by.upper(), "COUNT", "FIRST SEEN (UTC)", "LAST SEEN (UTC)",
              "TREND", other, "REASONS" if grouped.group_by != "reason" else "ORIGINS")]
    for group in grouped.groups:
        names = group.origins if grouped.group_by == "rule" else group.routes
        seconds = group.origins if grouped.group_by == "reason" else group.reasons
        table.append((
            printable(group.key, 60) or "(none)", str(group.count),
            group.first_seen.strftime("%Y-%m-%d %H:%M"),
            group.last_seen.strftime("%Y-%m-%d %H:%M"), _spark(group.trend),
            printable(", ".join(n or "(no rule)" for n in names), 60),
            printable(", ".join(seconds), 60),
        ))
    print_table(table)
    if grouped.total > len(grouped.groups):
        click.echo(f"({len(grouped.groups)} of {grouped.total} groups; narrow the filters or "
                   "raise --limit)")


SPARK_LEVELS = " ▁▂▃▄▅▆▇█"


def _spark(trend: tuple[int, ...]) -> str:
    top = max(trend, default=0) or 1
    return "".join(SPARK_LEVELS[0 if not count else max(1, round(count / top * 8))]
                   for count in trend)


@cors_group.command("find")
@click.argument("origin")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def find_command(origin: str, as_json: bool) -> None:
    """Where ORIGIN is allowed: every rule and entry (exact or a wildcard, on the rule or on a
    shared list it uses) that lets it through, since when and added by whom. Exits 1 when no
    entry allows it."""
    try:
        found, grants = find_origin(origin)
    except ServiceError as exc:
        fail(exc)
        return
    if as_json:
        json.dump({"origin": found, "items": [g.as_dict() for g in grants]}, sys.stdout,
                  indent=2)
        sys.stdout.write("\n")
    elif not grants:
        click.echo(f"{found} is not allowed by any rule.")
    else:
        table = [("RULE", "ENTRY", "MATCH", "LIST", "TENANT", "SINCE (UTC)", "ADDED BY",
                  "EXPIRES", "STATE")]
        for grant in grants:
            state = "expired" if grant.expired else "rule off" if not grant.serving \
                else "serving"
            table.append((
                printable(grant.rule_path, 50), printable(grant.entry, 60),
                "exact" if grant.exact else "wildcard",
                "-" if grant.list_name is None else printable(
                    f"{grant.list_tenant}/{grant.list_name}" if grant.list_tenant
                    else grant.list_name, 60),
                grant.allowlist_tenant or grant.rule_tenant or "-",
                grant.since.strftime("%Y-%m-%d %H:%M"), printable(grant.added_by, 40) or "-",
                grant.expires_at.strftime("%Y-%m-%d %H:%M") if grant.expires_at else "-",
                state,
            ))
        print_table(table)
    if not any(grant.serving for grant in grants):
        sys.exit(1)


@cors_group.command("prune-log")
@click.option("--days", type=click.FloatRange(0, MAX_LOOKBACK.days), default=None,
              callback=lambda _ctx, _param, value: _a_number_of_days(value),
              help="Keep this many days (default REQUEST_LOG_RETENTION_DAYS).")
def prune_log_command(days: float | None) -> None:
    """Delete request log rows older than the retention period."""
    click.echo(f"deleted {prune_log(days)} request log rows")


def _a_number_of_days(value: float | None) -> float | None:
    if value is not None and math.isnan(value):  # FloatRange lets nan through
        raise click.BadParameter("give a number of days, such as 30")
    return value


@cors_group.command("purge-expired")
@click.option("--days", type=click.FloatRange(0, MAX_LOOKBACK.days), default=None,
              callback=lambda _ctx, _param, value: _a_number_of_days(value),
              help="Keep expired origins this many days (default "
                   "EXPIRED_ORIGIN_RETENTION_DAYS).")
def purge_expired_command(days: float | None) -> None:
    """Delete origins that expired longer ago than the retention period (they already stopped
    matching at their expiry)."""
    keep = days if days is not None else float(
        current_app.config["EXPIRED_ORIGIN_RETENTION_DAYS"])
    click.echo(f"deleted {purge_expired_origins(keep, actor=cli_actor())} expired origins")
