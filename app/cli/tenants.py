"""``flask tenants ...``: tenants, managed by admins from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..services.errors import ServiceError
from ..services.tenants import create_tenant, list_tenants
from .common import cli_actor, fail, print_table, when

tenants_group = AppGroup("tenants", help="Manage tenants.")


@tenants_group.command("create")
@click.argument("slug")
@click.option("--name", default="", help="A readable name (default: the slug).")
def tenants_create(slug: str, name: str) -> None:
    """Create a tenant; SLUG is what requests carry (URL variable, subdomain, header)."""
    try:
        tenant = create_tenant(slug, name, actor=cli_actor())
    except ServiceError as exc:
        fail(exc)
        return
    click.echo(f"Created tenant {tenant.slug} ({tenant.name}).")


@tenants_group.command("list")
def tenants_list() -> None:
    """Every tenant."""
    tenants = list_tenants()
    if not tenants:
        click.echo("No tenants; create one with flask tenants create SLUG.")
        return
    print_table([("SLUG", "NAME", "CREATED")]
                + [(t.slug, t.name or "", when(t.created_at)) for t in tenants])
