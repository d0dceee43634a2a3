"""``cors-control-admin ...`` (or ``python -m app ...``): the flask command line on this app,
for an installed wheel where there is no ``wsgi.py`` for ``flask`` to find."""

from __future__ import annotations

import sys


def main() -> None:
    from flask.cli import FlaskGroup

    from . import create_app

    FlaskGroup(create_app=lambda: create_app(), help="CORS Control's admin app.").main(
        args=sys.argv[1:], prog_name="cors-control-admin")


if __name__ == "__main__":
    main()
