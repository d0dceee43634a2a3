"""``flask tokens ...`` and ``flask tenants ...``: API tokens and tenants, managed by admins
from the command line (the services decide; these commands only print)."""

from __future__ import annotations

import sys
from datetime import datetime

import click
from flask import Flask
from flask.cli import AppGroup

from ..cli import _actor, _fail
from ..models import ROLES, ApiToken
from ..services.errors import ServiceError
from ..services.tenants import create_tenant, list_tenants
from ..services.tokens import create_token, list_tokens, revoke_token, token_state
from ..timefmt import utc_text
from .representation import iso

tokens_group = AppGroup("tokens", help="Manage API tokens for the JSON admin API.")
tenants_group = AppGroup("tenants", help="Manage tenants.")


@tokens_group.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--tenant", help="The tenant's slug (tenant-editor and tenant-viewer only).")
@click.option("--expires", help="When it stops working, ISO 8601: 2026-12-31T00:00:00Z.")
def tokens_create(name: str, role: str, tenant: str | None, expires: str | None) -> None:
    """Create a token and print its secret, once: it is stored only as a hash.

    The secret alone goes to standard output, so SECRET=$(flask tokens create ...) works.
    """
    expires_at = _timestamp(expires) if expires else None
    try:
        issued = create_token(name, role, actor=_actor(), tenant=tenant, expires_at=expires_at)
    except ServiceError as exc:
        _fail(exc)
        return
    token = issued.token
    scope = f", tenant {tenant}" if tenant else ""
    until = f", expires {iso(token.expires_at)}" if token.expires_at else ""
    click.echo(f"Created token {token.name} ({token.role}{scope}{until}). Its secret is shown "
               "only this once; store it now:", err=True)
    click.echo(issued.secret)


@tokens_group.command("list")
def tokens_list() -> None:
    """Every token with its state and when it was last used (never the secrets)."""
    tokens = list_tokens()
    if not tokens:
        click.echo("No API tokens; create one with flask tokens create NAME --role ROLE.")
        return
    _table([("NAME", "ROLE", "TENANT", "STATE", "EXPIRES", "LAST USED", "CREATED")]
           + [_token_row(token) for token in tokens])


def _token_row(token: ApiToken) -> tuple[str, ...]:
    return (token.name, token.role, token.tenant.slug if token.tenant_id else "-",
            token_state(token), _when(token.expires_at), _when(token.last_used_at, "never"),
            _when(token.created_at))


@tokens_group.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke a token: it stops working at once."""
    try:
        token = revoke_token(name, actor=_actor())
    except ServiceError as exc:
        _fail(exc)
        return
    click.echo(f"Revoked token {token.name} at {_when(token.revoked_at)}.")


@tenants_group.command("create")
@click.argument("slug")
@click.option("--name", default="", help="A readable name (default: the slug).")
def tenants_create(slug: str, name: str) -> None:
    """Create a tenant; SLUG is what requests carry (URL variable, subdomain, header)."""
    try:
        tenant = create_tenant(slug, name, actor=_actor())
    except ServiceError as exc:
        _fail(exc)
        return
    click.echo(f"Created tenant {tenant.slug} ({tenant.name}).")


@tenants_group.command("list")
def tenants_list() -> None:
    """Every tenant."""
    tenants = list_tenants()
    if not tenants:
        click.echo("No tenants; create one with flask tenants create SLUG.")
        return
    _table([("SLUG", "NAME", "CREATED")]
           + [(t.slug, t.name or "", _when(t.created_at)) for t in tenants])


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        click.echo(f"Error: --expires {text!r} is not an ISO 8601 time; use one such as "
                   "2026-12-31T00:00:00Z.", err=True)
        sys.exit(1)
    return moment  # create_token takes a time without a zone as UTC


def _when(moment: datetime | None, none: str = "-") -> str:
    return utc_text(moment) if moment is not None else none


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width)
                             for cell, width in zip(row, widths, strict=True)).rstrip())


def init_app(app: Flask) -> None:
    app.cli.add_command(tokens_group)
    app.cli.add_command(tenants_group)
