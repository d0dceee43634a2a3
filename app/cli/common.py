"""What every command of the CLI shares: who acts, how a refusal of the services is shown,
how a table and a time are printed."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime

import click

from ..services.access import Actor
from ..services.errors import ServiceError, ValidationError
from ..timefmt import utc_text


def cli_actor() -> Actor:
    """The actor the audit log records: ``CORS_ACTOR``, else ``cli:`` and the login name."""
    return Actor(os.environ.get("CORS_ACTOR") or f"cli:{login_name()}", "cli")


def login_name() -> str:
    try:
        return os.getlogin()
    except OSError:
        return os.environ.get("USER", "unknown")


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
