"""Command-line clients of the service layer: ``flask cors ...``, ``flask users ...``."""

from __future__ import annotations

import json
import os
import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from .cors import get_control
from .cors.text import printable
from .models import ROLES
from .services import demo
from .services.errors import ServiceError, ValidationError
from .services.policy import Actor, export_policy, import_policy, purge_expired_origins
from .services.request_log import (
    MAX_PAGE_SIZE,
    entry_to_dict,
    prune_log,
    query_log,
    validate_filter,
)
from .services.simulator import simulate
from .services.tenants import tenant_slug
from .services.users import (
    create_user,
    ensure_first_admin,
    get_user_by_email,
    list_users,
    reset_password,
    set_user_active,
)

cors_group = AppGroup("cors", help="Manage and inspect the CORS policy.")
users_group = AppGroup("users", help="Manage dashboard users.")


def _actor() -> Actor:
    return Actor(os.environ.get("CORS_ACTOR") or f"cli:{_login_name()}", "cli")


def _login_name() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "unknown")


def _fail(error: ServiceError) -> None:
    if isinstance(error, ValidationError):
        click.echo("Nothing was written. Fix these entries and run the command again:", err=True)
        for item in error.errors:
            click.echo(f"  {item}", err=True)
    else:
        click.echo(f"Error: {error}", err=True)
    sys.exit(1)


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
        result = import_policy(document, actor=_actor(), replace=replace, dry_run=dry_run)
    except ServiceError as exc:
        _fail(exc)
        return
    verb = "would be" if dry_run else "were"
    for label, names in (("added", result.added), ("removed", result.removed)):
        for name in names:
            click.echo(f"{'+' if label == 'added' else '-'} {name}")
    for name, fields in sorted(result.changed.items()):
        click.echo(f"~ {name} ({', '.join(fields)})")
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

    Exits 0 when allowed, 2 when refused, 1 when no policy could be loaded.
    """
    cache = get_control(current_app).cache
    cache.refresh()
    if cache.snapshot is None:
        click.echo(f"Error: no policy could be loaded ({cache.last_error}).", err=True)
        sys.exit(1)
    result = simulate(cache.snapshot, origin, method, path, headers, credentials=credentials,
                      preflight=preflight)
    decision = result.decision
    kind = "preflight" if result.preflight else "request"
    click.echo(f"{result.verdict.upper()}: {kind} {method} {path} from {printable(origin)}")
    click.echo(f"rule:    {decision.rule.path if decision.rule else '(none)'}")
    click.echo(f"reason:  {decision.reason} - {printable(decision.explanation)}")
    click.echo(f"policy:  version {cache.snapshot.version}")
    if decision.preflight:
        click.echo(f"status:  {decision.status}")
    click.echo("headers:" + ("" if decision.headers else " (none)"))
    for name, value in decision.headers:
        click.echo(f"  {name}: {printable(value)}")
    if not decision.allowed:
        sys.exit(2)


@cors_group.command("log")
@click.option("--since", default="24h", show_default=True, help="How far back: 30m, 1h, 7d.")
@click.option("--rule", help="Only this rule path (use '' for requests no rule governs).")
@click.option("--reason", help="Only this reason code, such as origin-not-allowed.")
@click.option("--mode", type=click.Choice(["enforce", "report-only"]))
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
        _fail(exc)
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
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths,
                                                                        strict=True)).rstrip())
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
    click.echo(f"deleted {purge_expired_origins(keep, actor=_actor())} expired origins")


@users_group.command("create")
@click.argument("email")
@click.option("--role", default="viewer", show_default=True, type=click.Choice(ROLES))
@click.option("--tenant", help="The tenant's slug (tenant-editor and tenant-viewer only).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(email: str, role: str, tenant: str | None, password_stdin: bool) -> None:
    """Create a dashboard user; the password is asked for (or read from stdin)."""
    password = _new_password(password_stdin)
    try:
        user = create_user(email, password, role=role, tenant=tenant)
    except ServiceError as exc:
        _fail(exc)
        return
    click.echo(f"created {user.role} {user.email}" + (f" of tenant {tenant}" if tenant else ""))


@users_group.command("list")
def users_list() -> None:
    """Show every dashboard user: email, role, tenant and whether they may sign in."""
    users = list_users()
    if not users:
        click.echo("No users yet; create one with `flask users create EMAIL --role admin`.")
        return
    table = [("EMAIL", "ROLE", "TENANT", "STATUS", "CREATED (UTC)")]
    for user in users:
        table.append((printable(user.email, 254), user.role, tenant_slug(user.tenant_id) or "-",
                      "active" if user.active else "disabled",
                      user.created_at.strftime("%Y-%m-%d %H:%M")))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths,
                                                                        strict=True)).rstrip())


@users_group.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_set_password(email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL (asked for, or read from stdin); ends the user's sessions
    and clears the delay that failed sign-ins put on the account."""
    password = _new_password(password_stdin)
    try:
        user = reset_password(get_user_by_email(email).id, password, actor=_actor())
    except ServiceError as exc:
        _fail(exc)
        return
    click.echo(f"set a new password for {user.email}; their sessions have ended")


@users_group.command("disable")
@click.argument("email")
def users_disable(email: str) -> None:
    """Disable EMAIL: they cannot sign in and every session of theirs ends."""
    _set_active(email, False)


@users_group.command("enable")
@click.argument("email")
def users_enable(email: str) -> None:
    """Let a disabled user sign in again (their old sessions stay ended)."""
    _set_active(email, True)


def _set_active(email: str, active: bool) -> None:
    try:
        user = set_user_active(get_user_by_email(email).id, active, actor=_actor())
    except ServiceError as exc:
        _fail(exc)
        return
    click.echo(f"{'enabled' if active else 'disabled'} {user.email}")


def _new_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.command("bootstrap")
@with_appcontext
def bootstrap_command() -> None:
    """First start: create an admin if there is none and load the demo policy once."""
    email = os.environ.get("ADMIN_EMAIL", "admin@example.com")
    user, generated = ensure_first_admin(email, os.environ.get("ADMIN_PASSWORD"))
    if user is not None:
        if generated:
            click.echo(f"Created admin {user.email} with password: {generated}")
            click.echo("It is shown only this once; set ADMIN_PASSWORD to choose your own.")
        else:
            click.echo(f"Created admin {user.email} (password from ADMIN_PASSWORD).")
    if current_app.config.get("DEMO_POLICY"):
        result = demo.load_demo_policy_once()
        if result is not None:
            click.echo(f"Loaded the demo policy: {', '.join(result.added)}")


def init_app(app: Flask) -> None:
    app.cli.add_command(cors_group)
    app.cli.add_command(users_group)
    app.cli.add_command(bootstrap_command)
