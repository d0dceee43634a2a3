"""The command line: clients of the service layer, like the dashboard and the JSON API.

* :mod:`.policy`: ``flask cors ...`` (import, export, check, log, prune-log, purge-expired);
* :mod:`.users`: ``flask users ...`` and ``flask bootstrap``;
* :mod:`.tokens`: ``flask tokens ...``; :mod:`.tenants`: ``flask tenants ...``;
* :mod:`.first_run`: ``flask sign-in-hint``, the last line of ``make run``;
* :mod:`.common`: who acts, how a refusal is shown, tables and times.
"""

from __future__ import annotations

from flask import Flask

from .common import accept_actor_option
from .first_run import sign_in_hint_command
from .policy import cors_group
from .tenants import tenants_group
from .tokens import tokens_group
from .users import bootstrap_command, users_group


def init_app(app: Flask) -> None:
    """Register every command group on *app*'s ``flask`` command."""
    app.cli.add_command(sign_in_hint_command)
    for command in (cors_group, users_group, bootstrap_command, tokens_group, tenants_group):
        accept_actor_option(command)  # every command takes --actor NAME for the audit trail
        app.cli.add_command(command)
