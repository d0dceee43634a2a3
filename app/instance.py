"""The instance folder: the local secret key and the SQLite database, readable by the owner
alone (they hold what signs sessions, password and token hashes, and the audit trail)."""

from __future__ import annotations

import os
import secrets
import stat
import time
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from .config import default_database_url

KEY_FILE = "secret-key"
# How long a process waits for another one that has just created the key file to fill it.
KEY_WAIT_SECONDS = 5.0


def prepare_instance(app: Flask) -> None:
    """Create the instance folder (0700), fill in the default SQLite database URL and the
    local secret key (0600) when the environment sets none, and create the SQLite file 0600
    before SQLAlchemy first opens it (SQLite gives its journal and WAL files the database
    file's mode)."""
    instance = Path(app.instance_path)
    _private_folder(instance)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = default_database_url(app.instance_path)
    database = sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])
    if database is not None:
        private_file(database)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = local_secret_key(instance)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory ones."""
    parsed = sa.engine.make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:" \
            or name.startswith("file:"):
        return None
    return Path(name)


def private_file(path: Path) -> None:
    """Create *path* empty with mode 0600 if it is missing (an empty file is an empty SQLite
    database); take group and other access away from one this user already owns."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except FileNotFoundError:
        return  # its folder does not exist: SQLAlchemy reports that with its own message
    _owner_only(path, 0o600)


def local_secret_key(instance: Path) -> str:
    """Without SECRET_KEY in the environment, a random key kept in instance/ (never
    committed), so sessions survive a restart of ``make run``.

    The file is created 0600 in one step (``O_EXCL``): two processes starting together
    never both write a key, and the one that loses the race reads the winner's."""
    path = instance / KEY_FILE
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        _owner_only(path, 0o600)
        return _read_key(path)
    key = secrets.token_hex(32)
    with os.fdopen(descriptor, "w") as file:
        file.write(key)
    return key


def _read_key(path: Path) -> str:
    deadline = time.monotonic() + KEY_WAIT_SECONDS
    while True:
        key = path.read_text().strip()
        if key:
            return key
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} is empty; delete it to have a new key generated, or "
                               "set SECRET_KEY in the environment")
        time.sleep(0.01)  # created by another process that has not written it yet


def _private_folder(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(path, 0o700)


def _owner_only(path: Path, mode: int) -> None:
    """Tighten an existing file or folder this user owns; leave others' alone (an operator
    may point INSTANCE_PATH at a folder managed elsewhere)."""
    info = path.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        path.chmod(mode)
