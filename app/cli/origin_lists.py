"""``flask cors lists ...``: shared origin lists from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..services import origin_lists as lists
from ..services.errors import ServiceError
from ..services.policy_read import get_rule_by_path
from .common import cli_actor, fail, print_table, when

lists_group = AppGroup("lists", help="Shared origin lists that rules use beside their own.")

TENANT_OPTION = click.option("--tenant", default=None,
                             help="The tenant that owns the list (default: the platform).")


@lists_group.command("list")
def list_command() -> None:
    """Every list, with its owner, its origin count and the rules that use it."""
    rows = [("NAME", "OWNER", "ORIGINS", "RULES")]
    for origin_list in lists.list_lists():
        rows.append((origin_list.name, lists.owner_slug(origin_list) or "platform",
                     str(len(origin_list.entries)),
                     ", ".join(rule.path for rule in lists.rules_using(origin_list)) or "-"))
    print_table(rows)


@lists_group.command("show")
@click.argument("name")
@TENANT_OPTION
def show_command(name: str, tenant: str | None) -> None:
    """A list's origins and the rules that use it."""
    try:
        origin_list = lists.get_list(name, tenant=tenant)
    except ServiceError as exc:
        fail(exc)
        return
    click.echo(f"{origin_list.name} ({lists.owner_slug(origin_list) or 'platform'}): "
               f"{lists.describe_rules(lists.rules_using(origin_list))}")
    rows = [("ORIGIN", "EXPIRES", "ADDED BY", "NOTE")]
    rows += [(e.value, when(e.expires_at), e.added_by or "-", e.note or "")
             for e in origin_list.entries]
    print_table(rows)


@lists_group.command("create")
@click.argument("name")
@click.argument("origins", nargs=-1)
@TENANT_OPTION
@click.option("--description", default="")
def create_command(name: str, origins: tuple[str, ...], tenant: str | None,
                   description: str) -> None:
    """Create the list NAME with ORIGINS."""
    _run(lambda: lists.create_list({"name": name, "tenant": tenant, "description": description,
                                    "origins": list(origins)}, actor=cli_actor()),
         f"created origin list {name}")


@lists_group.command("add")
@click.argument("name")
@click.argument("origin")
@TENANT_OPTION
@click.option("--note", default="")
@click.option("--expires", default=None, help="When it stops matching (ISO 8601 UTC).")
def add_command(name: str, origin: str, tenant: str | None, note: str,
                expires: str | None) -> None:
    """Add ORIGIN to the list NAME: every rule that uses it allows ORIGIN, in one change."""
    def add() -> str:
        origin_list = lists.get_list(name, tenant=tenant)
        entry, created = lists.add_origin_to_list(cli_actor(), origin_list, origin, note=note,
                                                  expires_at=expires)
        rules = lists.describe_rules(lists.rules_using(origin_list))
        return (f"added {entry.value} to {name} ({rules})" if created
                else f"{entry.value} is already on {name}; nothing changed")
    _run(add)


@lists_group.command("remove")
@click.argument("name")
@click.argument("origin")
@TENANT_OPTION
def remove_command(name: str, origin: str, tenant: str | None) -> None:
    """Remove ORIGIN from the list NAME."""
    def remove() -> str:
        origin_list = lists.get_list(name, tenant=tenant)
        if lists.remove_origin_from_list(cli_actor(), origin_list, origin):
            return f"removed {origin} from {name}"
        raise click.ClickException(f"{origin} is not on {name}")
    _run(remove)


@lists_group.command("delete")
@click.argument("name")
@TENANT_OPTION
@click.option("--detach", is_flag=True,
              help="Also detach it from the rules that use it (they stop allowing its origins).")
def delete_command(name: str, tenant: str | None, detach: bool) -> None:
    """Delete the list NAME; refused while rules use it, unless --detach."""
    def delete() -> str:
        origin_list = lists.get_list(name, tenant=tenant)
        detached = lists.delete_list(origin_list.id, actor=cli_actor(), detach=detach)
        return f"deleted {name}" + (f"; detached from {', '.join(detached)}" if detached else "")
    _run(delete)


@lists_group.command("attach")
@click.argument("name")
@click.argument("rule_path")
@TENANT_OPTION
def attach_command(name: str, rule_path: str, tenant: str | None) -> None:
    """Let the rule for RULE_PATH use the list NAME."""
    def attach() -> str:
        origin_list = lists.get_list(name, tenant=tenant)
        rule = get_rule_by_path(rule_path)
        lists.attach_list(rule.id, origin_list.id, actor=cli_actor())
        return f"{rule_path} uses {name}"
    _run(attach)


@lists_group.command("detach")
@click.argument("name")
@click.argument("rule_path")
@TENANT_OPTION
def detach_command(name: str, rule_path: str, tenant: str | None) -> None:
    """Stop the rule for RULE_PATH using the list NAME."""
    def detach() -> str:
        origin_list = lists.get_list(name, tenant=tenant)
        rule = get_rule_by_path(rule_path)
        lists.detach_list(rule.id, origin_list.id, actor=cli_actor())
        return f"{rule_path} no longer uses {name}"
    _run(detach)


def _run(action, done: str | None = None) -> None:
    try:
        result = action()
    except ServiceError as exc:
        fail(exc)
        return
    click.echo(done if done is not None else result)
