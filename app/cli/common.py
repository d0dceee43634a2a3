"""What every command of the CLI shares: who acts, how a refusal of the services is shown,
how a table and a time are printed."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Sequence
from datetime import datetime

import click

from ..services.access import Actor
from ..services.errors import ServiceError, ValidationError
from ..timefmt import utc_text

ACTOR_ENV = "CORS_CONTROL_ACTOR"
_LEGACY_ACTOR_ENV = "CORS_ACTOR"  # the earlier name, still read after ACTOR_ENV
_ACTOR_KEY = "cors_control.actor"
_MAX_ACTOR = 200  # the audit trail's column


def cli_actor() -> Actor:
    """Who the audit trail records for a change made from the command line: ``--actor``,
    else ``$CORS_CONTROL_ACTOR``, else ``cli:`` and the OS login name. When none of them gives
    a name, the command stops (exit status 2) and says how to give one; nothing is written."""
    context = click.get_current_context(silent=True)
    given = context.meta.get(_ACTOR_KEY) if context is not None else None
    if given is not None:
        return Actor(_valid_actor(given, "--actor"), "cli")
    for variable in (ACTOR_ENV, _LEGACY_ACTOR_ENV):
        value = os.environ.get(variable, "").strip()
        if value:
            return Actor(_valid_actor(value, variable), "cli")
    name = login_name()
    if name is None:
        raise click.UsageError(
            "no name to record in the audit trail for this change: the OS login name could "
            f"not be found. Pass --actor NAME, or set {ACTOR_ENV}=NAME in the environment "
            "(in CI, for example, the pipeline's name). Nothing was written.")
    return Actor(f"cli:{name}", "cli")


def login_name() -> str | None:
    """The OS login name: the terminal's user, else ``$LOGNAME``/``$USER``, else the user
    database's name for this uid; None when none of them names anyone."""
    try:
        return os.getlogin()
    except OSError:
        pass
    try:
        return getpass.getuser() or None
    except (KeyError, OSError):  # a uid the user database does not know (containers)
        return None


def accept_actor_option(command: click.Command) -> None:
    """Give *command* (every command of a group, recursively) an ``--actor NAME`` option that
    :func:`cli_actor` reads; adding it twice does nothing."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_actor_option(sub)
        return
    if any(param.name == "actor" for param in command.params):
        return
    command.params.append(click.Option(
        ["--actor"], metavar="NAME", expose_value=False, callback=_remember_actor,
        help=f"Who the audit trail records for the changes this command makes (default: "
             f"${ACTOR_ENV}, else cli:<your login name>)."))


def _remember_actor(context: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        context.meta[_ACTOR_KEY] = value


def _valid_actor(value: str, source: str) -> str:
    name = value.strip()
    if not name:
        raise click.UsageError(f"{source} is empty: give the name the audit trail records, "
                               "such as --actor alice or --actor ci:deploy.")
    if len(name) > _MAX_ACTOR or not name.isprintable():
        raise click.UsageError(f"{source} must be a printable name of at most {_MAX_ACTOR} "
                               "characters, such as alice or ci:deploy.")
    return name


def fail(error: ServiceError) -> None:
    """Show what the services refused, and exit with status 1."""
    if isinstance(error, ValidationError):
        click.echo("Nothing was written. Fix these entries and run the command again:", err=True)
        for item in error.errors:
            click.echo(f"  {item}", err=True)
    else:
        click.echo(f"Error: {error}", err=True)
    sys.exit(1)


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    """*rows* (the first one the header) in left-aligned columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width)
                             for cell, width in zip(row, widths, strict=True)).rstrip())


def when(moment: datetime | None, none: str = "-") -> str:
    """A time as a table shows it: ``2026-05-01 12:00:00 UTC``, or *none*."""
    return utc_text(moment) if moment is not None else none
