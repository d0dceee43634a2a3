"""``flask tokens ...``: API tokens of the JSON admin API, managed by admins from the command
line (the services decide; these commands only print)."""

from __future__ import annotations

import sys
from datetime import datetime

import click
from flask.cli import AppGroup

from ..models import TOKEN_ROLES, ApiToken
from ..services.errors import ServiceError
from ..services.tokens import create_token, list_tokens, revoke_token, token_state
from ..timefmt import iso_utc
from .common import cli_actor, fail, print_table, when

tokens_group = AppGroup("tokens", help="Manage API tokens for the JSON admin API.")


@tokens_group.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(TOKEN_ROLES),
              help="data-plane: for hosts that run the engine in control-plane mode.")
@click.option("--tenant", help="The tenant's slug (tenant-editor and tenant-viewer only).")
@click.option("--expires", help="When it stops working, ISO 8601: 2026-12-31T00:00:00Z.")
def tokens_create(name: str, role: str, tenant: str | None, expires: str | None) -> None:
    """Create a token and print its secret, once: it is stored only as a hash.

    The secret alone goes to standard output, so SECRET=$(flask tokens create ...) works.
    """
    expires_at = _timestamp(expires) if expires else None
    try:
        issued = create_token(name, role, actor=cli_actor(), tenant=tenant, expires_at=expires_at)
    except ServiceError as exc:
        fail(exc)
        return
    token = issued.token
    scope = f", tenant {tenant}" if tenant else ""
    until = f", expires {iso_utc(token.expires_at)}" if token.expires_at else ""
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
    print_table([("NAME", "ROLE", "TENANT", "STATE", "EXPIRES", "LAST USED", "CREATED")]
                + [_token_row(token) for token in tokens])


def _token_row(token: ApiToken) -> tuple[str, ...]:
    return (token.name, token.role, token.tenant.slug if token.tenant is not None else "-",
            token_state(token), when(token.expires_at), when(token.last_used_at, "never"),
            when(token.created_at))


@tokens_group.command("revoke")
@click.argument("name")
def tokens_revoke(name: str) -> None:
    """Revoke a token: it stops working at once."""
    try:
        token = revoke_token(name, actor=cli_actor())
    except ServiceError as exc:
        fail(exc)
        return
    click.echo(f"Revoked token {token.name} at {when(token.revoked_at)}.")


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        click.echo(f"Error: --expires {text!r} is not an ISO 8601 time; use one such as "
                   "2026-12-31T00:00:00Z.", err=True)
        sys.exit(1)
    return moment  # create_token takes a time without a zone as UTC
