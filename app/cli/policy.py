"""``flask cors ...``: export, import, check and inspect the CORS policy from the command line."""

from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from ..cors import get_control
from ..cors.text import printable
from ..cors.vocabulary import APPLIED_MODES
from ..services.errors import ServiceError
from ..services.policy import import_policy, purge_expired_origins
from ..services.policy_read import export_policy
from ..services.request_log import (
    MAX_PAGE_SIZE,
    entry_to_dict,
    prune_log,
    query_log,
    validate_filter,
)
from ..services.simulator import answer_request, validate_request
from .common import cli_actor, fail, print_table

cors_group = AppGroup("cors", help="Manage and inspect the CORS policy.")


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
    try:
        document = json.load(file)
    except json.JSONDecodeError as exc:
        click.echo(f"Error: {file.name} is not valid JSON: {exc}. Nothing was written.", err=True)
        sys.exit(1)
    try:
        result = import_policy(document, actor=cli_actor(), replace=replace, dry_run=dry_run)
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
                         ("tenant namespaces changed", result.tenants_changed)):
        if slugs:
            click.echo(f"{label}: {', '.join(slugs)}")
    click.echo(
        f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} "
        f"removed, {len(result.unchanged)} unchanged ({verb} written"
        + ("" if dry_run else f"; policy version {result.policy_version}") + ")"
    )


@cors_group.command("check")
@click.argument("origin")
@click.argument("path")
@click.option("--method", "-m", default="GET", show_default=True)
@click.option("--header", "-H", "headers", multiple=True, help="A request header name (repeat).")
@click.option("--credentials", is_flag=True, help="The request carries cookies.")
@click.option("--preflight/--no-preflight", default=None,
              help="Default: preflight when the method or a header needs one.")
def check_command(origin: str, path: str, method: str, headers: tuple[str, ...],
                  credentials: bool, preflight: bool | None) -> None:
    """Show what the engine decides for ORIGIN calling PATH, and the headers it sends.

    Exits 0 when allowed, 2 when refused, 1 when the question is not valid or no policy
    could be loaded.
    """
    validation = validate_request(origin=origin, method=method, path=path, header_names=headers,
                                  credentials=credentials, preflight=preflight)
    if validation.request is None:
        for error in validation.errors:
            click.echo(f"Error: {printable(str(error))}", err=True)
        sys.exit(1)
    cache = get_control(current_app).cache
    cache.refresh()
    if cache.snapshot is None:
        click.echo(f"Error: no policy could be loaded ({cache.last_error}).", err=True)
        sys.exit(1)
    answer = answer_request(validation.request, cache.snapshot)
    result = answer.simulation
    assert result is not None  # the CLI is no tenant role: it sees every answer
    decision = result.decision
    kind = "preflight" if result.preflight else "request"
    click.echo(f"{result.verdict.upper()}: {kind} {result.method} {printable(result.path)} "
               f"from {printable(origin)}")
    click.echo(f"rule:    {decision.rule.path if decision.rule else '(none)'}")
    click.echo(f"reason:  {decision.reason} - {printable(decision.explanation)}")
    click.echo(f"policy:  version {answer.policy_version}")
    if decision.preflight:
        click.echo(f"status:  {decision.status}")
    click.echo("headers:" + ("" if decision.headers else " (none)"))
    for name, value in decision.headers:
        click.echo(f"  {name}: {printable(value)}")
    for hint in answer.hints:
        click.echo(f"note:    {printable(hint)}")
    if not decision.allowed:
        sys.exit(2)


@cors_group.command("log")
@click.option("--since", default="24h", show_default=True, help="How far back: 30m, 1h, 7d.")
@click.option("--rule", help="Only this rule path (use '' for requests no rule governs).")
@click.option("--reason", help="Only this reason code, such as origin-not-allowed.")
@click.option("--mode", type=click.Choice(APPLIED_MODES))
@click.option("--origin", help="Only origins containing this text.")
@click.option("--limit", default=100, show_default=True, help=f"At most {MAX_PAGE_SIZE}.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
def log_command(since: str, rule: str | None, reason: str | None, mode: str | None,
                origin: str | None, limit: int, as_json: bool) -> None:
    """Show refused origins and failed preflights, newest first."""
    try:
        filters = validate_filter(since=since, rule=rule, reason=reason, mode=mode,
                                  origin=origin)
    except ServiceError as exc:
        fail(exc)
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
    if total > len(rows):
        click.echo(f"({len(rows)} of {total} rows; narrow the filters or raise --limit)")


@cors_group.command("prune-log")
@click.option("--days", type=float, default=None,
              help="Keep this many days (default REQUEST_LOG_RETENTION_DAYS).")
def prune_log_command(days: float | None) -> None:
    """Delete request log rows older than the retention period."""
    if days is not None and days < 0:
        click.echo("Error: --days must be 0 or more.", err=True)
        sys.exit(1)
    click.echo(f"deleted {prune_log(days)} request log rows")


@cors_group.command("purge-expired")
@click.option("--days", type=float, default=None,
              help="Keep expired origins this many days (default "
                   "EXPIRED_ORIGIN_RETENTION_DAYS).")
def purge_expired_command(days: float | None) -> None:
    """Delete origins that expired longer ago than the retention period (they already stopped
    matching at their expiry)."""
    if days is not None and days < 0:
        click.echo("Error: --days must be 0 or more.", err=True)
        sys.exit(1)
    keep = days if days is not None else float(
        current_app.config["EXPIRED_ORIGIN_RETENTION_DAYS"])
    click.echo(f"deleted {purge_expired_origins(keep, actor=cli_actor())} expired origins")
