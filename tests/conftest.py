"""Test rig: a real app on a real database.

The suite runs on SQLite by default. With ``TEST_DATABASE_URL`` set (for example
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) the same suite runs on that database.
The schema is built once per session by the Alembic migrations, and emptied between tests.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from app import close_app, create_app
from cors_control import get_control

# create_app makes its instance folder; keep tests out of the project's own instance/.
os.environ.setdefault("INSTANCE_PATH", tempfile.mkdtemp(prefix="cors-control-test-"))

TABLES_TO_EMPTY = (
    "alert_deliveries", "alert_states", "webhooks", "rule_drafts",
    "rule_origin_lists", "origin_list_entries", "origin_lists",
    "allowed_origins", "rules", "audit_entries", "users", "request_log", "sign_in_throttle",
    "engine_processes", "api_tokens", "tenants", "policy_changes",
)


def pytest_report_header(config) -> str:
    return f"database: {_backend(os.environ.get('TEST_DATABASE_URL') or 'sqlite')}"


def _backend(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``postgresql`` (LISTEN/NOTIFY) exist only on PostgreSQL: on SQLite they
    are deselected, never skipped (CI fails on a skipped test)."""
    if _backend(os.environ.get("TEST_DATABASE_URL") or "sqlite") == "postgresql":
        return
    deselected = [item for item in items if item.get_closest_marker("postgresql")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgresql")]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """The database every test of the session uses, migrated once from nothing."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        _drop_everything(url)
    app = create_app(_test_config(url, tmp_path_factory.mktemp("instance")))
    try:
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
    finally:
        close_app(app, flush_log=False)
    return url


def _drop_everything(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        else:
            sa.MetaData().drop_all(conn)
    engine.dispose()


def _test_config(url: str, instance: Path) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": url,
        "CORS_REFRESH_INTERVAL": 0.05,
        "DEMO_POLICY": False,
        "WTF_CSRF_ENABLED": True,
        # Tests drive the alert job by calling its run_once (tests/test_alerts.py).
        "ALERTS_JOB_ENABLED": False,
    }


def empty_database(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in TABLES_TO_EMPTY:
            conn.execute(sa.text(f"DELETE FROM {table}"))
        conn.execute(sa.text("UPDATE policy_state SET version = 0"))
    engine.dispose()


@pytest.fixture
def make_app(database_url, tmp_path) -> Iterator:
    """Build apps on the test database; every one is shut down after the test."""
    apps: list[Flask] = []

    def build(**overrides) -> Flask:
        app = create_app({**_test_config(database_url, tmp_path), **overrides})
        apps.append(app)
        return app

    empty_database(database_url)
    yield build
    for app in apps:
        close_app(app, flush_log=False)


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def policy(app):
    """Load a policy document through the service layer and wait for the engine to serve it."""
    from app.services.access import Actor
    from app.services.policy import import_policy

    def load(*rules: dict) -> None:
        with app.app_context():
            import_policy({"rules": list(rules)}, actor=Actor("test", "cli"), replace=True)
        get_control(app).cache.refresh()

    return load


@pytest.fixture
def bearer(app):
    """Issue API tokens: ``bearer("editor")`` or ``bearer("tenant-editor", "acme")`` gives the
    request headers that carry a new token of that role (created by the CLI's actor)."""
    from app.services.access import Actor
    from app.services.tokens import create_token

    counter = iter(range(10_000))

    def issue(role: str, tenant: str | None = None) -> dict[str, str]:
        with app.app_context():
            secret = create_token(f"{role}-{next(counter)}", role,
                                  actor=Actor("test-admin", "cli"), tenant=tenant).secret
        return {"Authorization": f"Bearer {secret}"}

    return issue


PASSWORD = "a-long-test-password"
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token_of(client: FlaskClient) -> str:
    """The CSRF token of the client's session, read from a page as a browser would."""
    page = client.get("/admin/login")
    match = _CSRF_META.search(page.get_data(as_text=True))
    assert match, "the login page carries the CSRF token"
    return match.group(1)


@pytest.fixture
def sign_in(app):
    """``sign_in(role)`` returns a test client signed in as a new user with that role;
    ``sign_in("tenant-editor", tenant="acme")`` one of a tenant (which must exist).

    The client has ``.csrf`` (the token to send as ``csrf_token`` or ``X-CSRFToken``) and
    ``.user_email``.
    """
    from app.services.users import create_user

    counter = iter(range(1000))

    def sign_in(role: str = "admin", *, email: str | None = None,
                tenant: str | None = None) -> FlaskClient:
        email = email or f"{role}{next(counter)}@example.com"
        with app.app_context():
            create_user(email, PASSWORD, role=role, tenant=tenant)
        client = app.test_client()
        token = csrf_token_of(client)
        response = client.post("/admin/login", data={
            "email": email, "password": PASSWORD, "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        client.csrf = csrf_token_of_signed_in(client)
        client.user_email = email
        return client

    return sign_in


def csrf_token_of_signed_in(client: FlaskClient) -> str:
    page = client.get("/admin/")
    match = _CSRF_META.search(page.get_data(as_text=True))
    assert match, "admin pages carry the CSRF token"
    return match.group(1)


def post_form(client, url: str, data: dict | None = None, **kwargs):
    """Post a dashboard form with the client's CSRF token. A rule form that takes something
    away answers with its review first; it is then posted again with that confirmation
    ticked, as a person would (test_impact_dashboard tests the review step itself)."""
    form = {"csrf_token": client.csrf, **(data or {})}
    response = client.post(url, data=form, **kwargs)
    text = response.get_data(as_text=True)
    review = re.search(r'name="confirm_impact" value="([0-9a-f]+)"', text)
    if review and "Not saved yet" in text and "confirm_impact" not in form:
        response = client.post(url, data={**form, "confirm_impact": review.group(1)},
                               **kwargs)
    return response
