"""``flask tenants ...``: tenants, managed by admins from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..services.errors import ServiceError
from ..services.tenants import create_tenant, list_tenants, set_tenant_paths
from .common import cli_actor, fail, print_table, when

tenants_group = AppGroup("tenants", help="Manage tenants.")


@tenants_group.command("create")
@click.argument("slug")
@click.option("--name", default="", help="A readable name (default: the slug).")
@click.option("--path", "paths", multiple=True, metavar="PATTERN",
              help="A namespace: a path pattern the tenant's rules may govern, such as "
                   "'/api/t/acme/*' (repeat for several).")
def tenants_create(slug: str, name: str, paths: tuple[str, ...]) -> None:
    """Create a tenant; SLUG is what requests carry (URL variable, subdomain, header)."""
    try:
        tenant = create_tenant(slug, name, paths=paths, actor=cli_actor())
    except ServiceError as exc:
        fail(exc)
        return
    click.echo(f"Created tenant {tenant.slug} ({tenant.name}); namespaces: "
               f"{_namespaces(tenant.paths)}.")


@tenants_group.command("set-paths")
@click.argument("slug")
@click.option("--path", "paths", multiple=True, metavar="PATTERN",
              help="A namespace, such as '/api/t/acme/*' (repeat for several; none at all "
                   "leaves the tenant without namespace, so it can own no new rule).")
def tenants_set_paths(slug: str, paths: tuple[str, ...]) -> None:
    """Replace the namespaces of tenant SLUG: the path patterns its rules may govern."""
    try:
        tenant = set_tenant_paths(slug, paths, actor=cli_actor())
    except ServiceError as exc:
        fail(exc)
        return
    click.echo(f"Tenant {tenant.slug} governs {_namespaces(tenant.paths)}.")


def _namespaces(paths: list[str]) -> str:
    return ", ".join(paths) if paths else "none (it can own no rule until it has one)"


@tenants_group.command("list")
def tenants_list() -> None:
    """Every tenant."""
    tenants = list_tenants()
    if not tenants:
        click.echo("No tenants; create one with flask tenants create SLUG.")
        return
    print_table([("SLUG", "NAME", "NAMESPACES", "CREATED")]
                + [(t.slug, t.name or "", " ".join(t.paths) or "-", when(t.created_at))
                   for t in tenants])
