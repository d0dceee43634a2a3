"""Real databases for the sections that need one: SQLite files built by the migrations.

The schema comes from the Alembic revisions (``flask db upgrade``), exactly as in production,
never from ``db.create_all()``. Every app built here is shut down by :func:`app.close_app`: its
policy poller stopped, its request log dropped, its connection pools disposed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from app import close_app, create_app
from app.config import ROOT


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def app_config(url: str) -> dict[str, Any]:
    """The configuration of every app the bench builds on a database of its own."""
    return {
        "TESTING": True,
        "SECRET_KEY": "bench-secret-key",
        "SQLALCHEMY_DATABASE_URI": url,
        "DEMO_POLICY": False,
    }


@contextmanager
def bench_app(url: str, instance: Path, **overrides: Any) -> Iterator[Flask]:
    """``create_app`` on *url*, with its instance folder in *instance* (never the project's
    own ``instance/``); shut down on exit."""
    app = _create_app_in(instance, {**app_config(url), **overrides})
    try:
        yield app
    finally:
        close_app(app, flush_log=False)


def migrate(url: str, instance: Path) -> None:
    """Build the schema of an empty database: ``flask db upgrade``, in a process of its own
    (Alembic configures logging; the bench's output should not change after it ran)."""
    env = {**os.environ, "FLASK_APP": "wsgi.py", "DATABASE_URL": url,
           "INSTANCE_PATH": str(instance), "SECRET_KEY": "bench-secret-key", "DEMO_POLICY": "0"}
    done = subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"flask db upgrade failed on {url}:\n{done.stderr}")


def _create_app_in(instance: Path, config: dict[str, Any]) -> Flask:
    # create_app reads its instance folder from the environment; set it for this call only.
    previous = os.environ.get("INSTANCE_PATH")
    os.environ["INSTANCE_PATH"] = str(instance)
    try:
        app = create_app(config)
    finally:
        if previous is None:
            del os.environ["INSTANCE_PATH"]
        else:
            os.environ["INSTANCE_PATH"] = previous
    return app
