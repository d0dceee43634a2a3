"""``flask users ...`` and ``flask bootstrap``: dashboard users from the command line."""

from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from ..models import ROLES
from ..services import demo
from ..services.errors import ServiceError
from ..services.users import create_user, ensure_first_admin
from .common import fail

users_group = AppGroup("users", help="Manage dashboard users.")


@users_group.command("create")
@click.argument("email")
@click.option("--role", default="viewer", show_default=True, type=click.Choice(ROLES))
@click.option("--tenant", help="The tenant's slug (tenant-editor and tenant-viewer only).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(email: str, role: str, tenant: str | None, password_stdin: bool) -> None:
    """Create a dashboard user; the password is asked for (or read from stdin)."""
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(email, password, role=role, tenant=tenant)
    except ServiceError as exc:
        fail(exc)
        return
    click.echo(f"created {user.role} {user.email}" + (f" of tenant {tenant}" if tenant else ""))


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
