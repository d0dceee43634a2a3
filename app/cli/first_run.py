"""``flask sign-in-hint``: the last line ``make run`` prints, once the server listens: where to
sign in and as whom."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import click
from flask.cli import with_appcontext

from ..services.users import list_users


@click.command("sign-in-hint")
@click.argument("url")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0, 300), default=0,
              help="Wait up to this many seconds for the server at URL to listen first.")
@with_appcontext
def sign_in_hint_command(url: str, wait_seconds: float) -> None:
    """Print the sign-in URL of the server at URL and the email of its first admin.

    With --wait, print it only once something listens on URL's port (without sending a
    request), so it follows the server's own start-up lines."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.UsageError(f"URL must look like http://127.0.0.1:5000, not {url!r}")
    if wait_seconds and not _listening(parts.hostname, parts.port or
                                       (443 if parts.scheme == "https" else 80), wait_seconds):
        click.echo(f"No server is listening at {url} after {wait_seconds:g} s; once one is, "
                   f"sign in at {url.rstrip('/')}/admin/login.", err=True)
        raise SystemExit(1)
    admins = [user for user in list_users() if user.role == "admin" and user.active]
    who = (f" as {admins[0].email}" if admins else
           " (there is no active admin: create one with flask users create EMAIL --role admin)")
    click.echo(f"Sign in at {url.rstrip('/')}/admin/login{who}")


def _listening(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                time.sleep(0.3)  # let the server finish writing its start-up lines
                return True
        except OSError:
            time.sleep(0.2)
    return False
