"""The admin surface while its database is unreachable: 503 pages, fragments and problem
documents, one log line a request, the outage and the recovery logged once.

The main test runs the app on a PostgreSQL server of its own (never the shared one), stops it
under the app and starts it again. The quick tests use a SQLite file that cannot be opened.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from app import close_app, create_app
from app.api import URL_PREFIX
from app.api.openapi import DOCUMENT
from app.extensions import db
from app.models import Rule
from app.services.policy import Actor
from app.services.tokens import TOKEN_PREFIX, create_token
from cors_control import get_control
from tests.conftest import PASSWORD, _test_config, csrf_token_of

APP_ORIGIN = "https://app.example.com"
OUTAGE_LOGGER = "app.errors"
PROBLEM = "application/problem+json"


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free loopback port, which a test may stop.

    PostgreSQL refuses to run as root, so as root (the tests and CI) its commands run as the
    ``postgres`` OS user, in a directory that user owns.
    """

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not binaries:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql; "
                               "install the postgresql package")
        self.bin = Path(binaries[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="cors-control-outage-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "--encoding=UTF8", "--no-instructions")
        self.start()

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def remove(self) -> None:
        """Stop the server if it runs (whatever state the test left it in) and delete it."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                cwd=self.root)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, command, result.stdout,
                                                result.stderr)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.create()
        yield server
    finally:
        server.remove()


@pytest.fixture
def app(private_postgres, tmp_path) -> Iterator[Flask]:
    """The app on the private PostgreSQL server, migrated from nothing. Overrides the rig's
    ``app``, so ``sign_in`` and ``policy`` work on it."""
    app = create_app(_test_config(private_postgres.url, tmp_path))
    try:
        with app.app_context():
            upgrade()
        yield app
    finally:
        close_app(app, flush_log=False)


@pytest.mark.slow
def test_admin_surface_answers_503_while_its_database_is_down_and_recovers(
        app, private_postgres, sign_in, policy, caplog):
    policy({"path": "/api/*", "origins": [APP_ORIGIN]})
    version = get_control(app).cache.status().version
    admin = sign_in("admin")
    token = _api_token(app)
    with app.app_context():
        rule_id = db.session.scalar(sa.select(Rule.id))
    stranger = app.test_client()
    stranger_csrf = csrf_token_of(stranger)
    assert admin.get("/admin/rules").status_code == 200

    private_postgres.stop()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=OUTAGE_LOGGER):
        page = admin.get("/admin/rules")
        fragment = admin.get("/admin/rules?q=orders", headers={"HX-Request": "true"})
        write = admin.post(f"/admin/rules/{rule_id}/disable",
                           headers={"HX-Request": "true", "X-CSRFToken": admin.csrf})
        api = app.test_client().get(URL_PREFIX + "/rules",
                                    headers={"Authorization": f"Bearer {token}"})
        login = stranger.post("/admin/login", data={
            "email": admin.user_email, "password": PASSWORD, "csrf_token": stranger_csrf})
        governed = app.test_client().get("/api/orders", headers={"Origin": APP_ORIGIN})
    failed = 5

    message = f"the database is unreachable; the engine keeps serving policy version {version}"
    assert page.status_code == 503
    assert page.mimetype == "text/html"
    body = page.get_data(as_text=True)
    assert message in body.lower()
    assert '<link rel="stylesheet"' in body  # the site's page, styled
    assert 'aria-label="Main"' in body  # the navigation, from the session alone
    assert page.headers["Retry-After"] == "5"

    for response in (fragment, write):
        assert response.status_code == 503
        text = response.get_data(as_text=True)
        assert "<html" not in text
        assert message in text.lower()
        assert response.headers["HX-Retarget"] == "#main"
        assert response.headers["HX-Reswap"] == "afterbegin"

    assert api.status_code == 503
    assert api.mimetype == PROBLEM
    assert api.headers["Retry-After"] == "5"
    problem = api.get_json(force=True)
    assert problem["status"] == 503
    assert problem["detail"] == message
    assert problem["policy_version"] == version
    assert problem["instance"] == URL_PREFIX + "/rules"
    assert "503" in DOCUMENT["paths"]["/rules"]["get"]["responses"]  # and it is documented

    assert login.status_code == 503
    login_body = login.get_data(as_text=True)
    assert message in login_body.lower()
    assert 'aria-label="Main"' not in login_body  # nobody signed in: no navigation

    assert governed.status_code == 200
    assert governed.headers["Access-Control-Allow-Origin"] == APP_ORIGIN

    lines = [r for r in caplog.records if r.name == OUTAGE_LOGGER]
    assert len(lines) == failed, [r.getMessage() for r in lines]
    assert lines[0].getMessage().startswith("database unreachable")
    assert f"policy version {version}" in lines[0].getMessage()
    assert all(r.getMessage().startswith("database still unreachable") for r in lines[1:])
    assert "GET /admin/rules" in lines[0].getMessage()
    assert f"POST /admin/rules/{rule_id}/disable" in lines[2].getMessage()
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"
    assert "Traceback" not in caplog.text

    private_postgres.start()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=OUTAGE_LOGGER):
        assert admin.get("/admin/rules").status_code == 200
        assert app.test_client().get(URL_PREFIX + "/rules", headers={
            "Authorization": f"Bearer {token}"}).status_code == 200
        fresh = app.test_client()
        assert fresh.post("/admin/login", data={
            "email": admin.user_email, "password": PASSWORD,
            "csrf_token": csrf_token_of(fresh)}).status_code == 302
    recovered = [r.getMessage() for r in caplog.records if r.name == OUTAGE_LOGGER]
    assert len(recovered) == 1, recovered
    assert recovered[0].startswith(f"database reachable again after {failed} failed requests")


def _api_token(app: Flask) -> str:
    with app.app_context():
        return create_token("outage-probe", "viewer", actor=Actor("test", "cli")).secret


@pytest.fixture
def unreachable_app(make_app, tmp_path) -> Flask:
    """An app whose SQLite file cannot be opened: every query fails as during an outage."""
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'cors.db'}")

    @app.get("/admin/probe/<path:rest>")
    def admin_probe(rest: str) -> str:
        return str(db.session.scalar(sa.text("SELECT 1")))

    @app.get("/api/probe")
    def api_probe() -> str:
        return str(db.session.scalar(sa.text("SELECT 1")))

    return app


def test_failed_request_is_logged_on_one_line_with_its_path_escaped(unreachable_app, caplog):
    with caplog.at_level(logging.INFO, logger=OUTAGE_LOGGER):
        response = unreachable_app.test_client().get("/admin/probe/%0A%1B[31mforged")
    assert response.status_code == 503
    [line] = [r.getMessage() for r in caplog.records if r.name == OUTAGE_LOGGER]
    assert "/admin/probe/\\x0a\\x1b[31mforged" in line
    assert "\n" not in line and "\x1b" not in line


def test_outage_before_any_policy_was_loaded_says_the_engine_has_none(unreachable_app):
    response = unreachable_app.test_client().post(URL_PREFIX + "/rules", json={}, headers={
        "Authorization": f"Bearer {TOKEN_PREFIX}{'x' * 43}"})
    assert response.status_code == 503
    assert response.get_json(force=True)["detail"] == (
        "the database is unreachable; the engine has no policy loaded and refuses "
        "cross-origin requests until it can load one")
    assert response.get_json(force=True)["policy_version"] is None


def test_connection_errors_outside_the_admin_surface_are_left_alone(unreachable_app):
    with pytest.raises(sa.exc.OperationalError):
        unreachable_app.test_client().get("/api/probe")
