"""``flask users ...`` and ``flask bootstrap``: dashboard users from the command line."""

from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from cors_control.text import printable

from ..models import ROLES
from ..services import demo
from ..services.errors import ServiceError
from ..services.tenants import tenant_slug
from ..services.users import (
    create_user,
    ensure_first_admin,
    get_user_by_email,
    list_users,
    reset_password,
    set_user_active,
)
from .common import cli_actor, fail, print_table, when

users_group = AppGroup("users", help="Manage dashboard users.")


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
        fail(exc)
        return
    click.echo(f"created {user.role} {user.email}" + (f" of tenant {tenant}" if tenant else ""))


@users_group.command("list")
def users_list() -> None:
    """Show every dashboard user: email, role, tenant and whether they may sign in."""
    users = list_users()
    if not users:
        click.echo("No users yet; create one with `flask users create EMAIL --role admin`.")
        return
    print_table([("EMAIL", "ROLE", "TENANT", "STATUS", "CREATED (UTC)")] + [
        (printable(user.email, 254), user.role, tenant_slug(user.tenant_id) or "-",
         "active" if user.active else "disabled", when(user.created_at))
        for user in users
    ])


@users_group.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_set_password(email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL (asked for, or read from stdin); ends the user's sessions
    and clears the delay that failed sign-ins put on the account."""
    password = _new_password(password_stdin)
    try:
        user = reset_password(get_user_by_email(email).id, password, actor=cli_actor())
    except ServiceError as exc:
        fail(exc)
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
        user = set_user_active(get_user_by_email(email).id, active, actor=cli_actor())
    except ServiceError as exc:
        fail(exc)
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
