"""Who the audit trail records for a CLI change: ``--actor``, then ``CORS_CONTROL_ACTOR``, then
the OS login name, and never ``unknown``: without a name the command refuses and says how."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.config import ROOT
from app.extensions import db
from app.models import AuditEntry, Tenant

NAME_VARIABLES = ("CORS_CONTROL_ACTOR", "CORS_ACTOR", "LOGNAME", "USER", "LNAME", "USERNAME")


def _actors(app) -> list[str]:
    with app.app_context():
        return db.session.scalars(sa.select(AuditEntry.actor).order_by(AuditEntry.id)).all()


@pytest.fixture
def no_names(monkeypatch):
    """An environment that names nobody, as in many containers and CI runners."""
    for name in NAME_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_actor_option_comes_first_then_the_variable(app, runner, no_names):
    env = {"CORS_CONTROL_ACTOR": "ci:pipeline-7"}
    done = runner.invoke(args=["tenants", "create", "acme", "--actor", "alice"], env=env)
    assert done.exit_code == 0, done.output
    done = runner.invoke(args=["tenants", "create", "globex"], env=env)
    assert done.exit_code == 0, done.output
    assert _actors(app) == ["alice", "ci:pipeline-7"]


def test_every_command_accepts_actor_in_its_help(runner):
    for args in (["cors", "import", "--help"], ["tokens", "create", "--help"],
                 ["users", "set-password", "--help"], ["tenants", "create", "--help"]):
        done = runner.invoke(args=args)
        assert "--actor NAME" in done.output and "CORS_CONTROL_ACTOR" in done.output, args


def test_an_empty_or_unprintable_actor_is_refused_before_anything_is_written(app, runner,
                                                                             no_names):
    done = runner.invoke(args=["tenants", "create", "acme", "--actor", "  "])
    assert done.exit_code == 2
    assert "--actor is empty" in done.output and "--actor alice" in done.output
    done = runner.invoke(args=["tenants", "create", "acme", "--actor", "bob\x1b[31m"])
    assert done.exit_code == 2 and "printable name" in done.output
    assert _actors(app) == []


def _flask(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, **kwargs)


def _clean_env(database_url: str, instance: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NAME_VARIABLES}
    env.update({"FLASK_APP": "wsgi.py", "DATABASE_URL": database_url,
                "INSTANCE_PATH": str(instance), "SECRET_KEY": "test-secret-key",
                "DEMO_POLICY": "0"})
    return env


@pytest.mark.slow
def test_without_option_or_variable_the_os_login_name_is_recorded(app, database_url, tmp_path):
    """No $USER, no $LOGNAME, no terminal: the name still comes from the user database."""
    done = _flask(["tenants", "create", "acme"], _clean_env(database_url, tmp_path / "i"))
    assert done.returncode == 0, done.stderr
    assert _actors(app) == [f"cli:{pwd.getpwuid(os.getuid()).pw_name}"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a uid nobody knows")
def test_with_no_name_anywhere_the_command_refuses_and_says_how_to_give_one(app, runner):
    """A uid the user database does not know, no terminal and no name in the environment (a
    container run with an arbitrary uid): the command stops with exit status 2, names
    --actor and CORS_CONTROL_ACTOR, and writes nothing. Run in a forked child that becomes
    that uid."""
    uid = next(u for u in range(54321, 60000) if not _known_uid(u))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no terminal, no name, an unknown uid
        try:
            os.setsid()
            os.setgid(uid)
            os.setuid(uid)
            for name in NAME_VARIABLES:
                os.environ.pop(name, None)
            done = runner.invoke(args=["tenants", "create", "acme"])
            os.write(write, json.dumps([done.exit_code, done.output]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        exit_code, output = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert exit_code == 2, output
    assert "no name to record in the audit trail" in output
    assert "--actor NAME" in output and "CORS_CONTROL_ACTOR=NAME" in output
    assert "Nothing was written." in output
    assert "unknown" not in output
    assert _actors(app) == []
    with app.app_context():
        assert db.session.scalars(sa.select(Tenant.slug)).all() == []


def _known_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
