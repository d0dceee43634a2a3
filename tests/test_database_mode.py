"""Database mode: a team's own Flask API, which installs only the engine, governed by the admin
app's database with ``CorsControl(api, database_url=...)``.

The API here is a plain ``Flask()`` of its own (nothing of ``app`` runs in it); the admin app
only writes the policy through its service layer, as it would on another host.
"""

from __future__ import annotations

import os
import threading

import pytest
import sqlalchemy as sa
from flask import Flask

from app.services.access import Actor
from app.services.policy import add_origin, create_rule
from cors_control import CorsControl, get_control
from cors_control.decision import ORIGIN_NOT_ALLOWED
from cors_control.vocabulary import ENFORCE
from tests.test_runtime import _eventually

TESTER = Actor("tester", "cli")
ORIGIN = "https://shop.example.com"
LATER = "https://later.example.com"
STRANGER = "https://evil.example.net"
# The threads database mode starts beside a request.
WORKERS = ("cors-policy-poller", "cors-policy-listener", "cors-log-flusher")
# On PostgreSQL the poller waits this long: only a push can explain a change served sooner.
NEVER = 60.0


def _on_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


@pytest.fixture
def team_api(app, database_url):
    """Build a plain Flask API governed by the test database; every one is closed after."""
    controls: list[CorsControl] = []

    def build(**options) -> tuple[Flask, CorsControl]:
        api = Flask("team_api")
        api.config.update(
            CORS_REFRESH_INTERVAL=NEVER if _on_postgresql(database_url) else 0.05,
            CORS_LISTEN_REFRESH_INTERVAL=NEVER,
            REQUEST_LOG_FLUSH_INTERVAL=3600,  # written by close(), not by the flusher
        )

        @api.get("/api/orders")
        def orders() -> dict:
            return {"orders": []}

        control = CorsControl(api, database_url=database_url, **options)
        controls.append(control)
        return api, control

    yield build
    for control in controls:
        control.close()


def _allowed(api: Flask, origin: str) -> str | None:
    response = api.test_client().get("/api/orders", headers={"Origin": origin})
    assert response.status_code == 200
    return response.headers.get("Access-Control-Allow-Origin")


def test_a_rule_written_by_the_admin_app_is_answered_by_the_plain_api(app, team_api):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    api, control = team_api()
    assert get_control(api) is control
    assert _allowed(api, ORIGIN) == ORIGIN
    assert _allowed(api, STRANGER) is None
    preflight = api.test_client().options("/api/orders", headers={
        "Origin": STRANGER, "Access-Control-Request-Method": "DELETE"})
    assert preflight.status_code == 403


def test_a_change_reaches_the_plain_api_without_a_restart(app, team_api, database_url):
    """On SQLite by polling; on PostgreSQL by push (the poller waits a minute there)."""
    with app.app_context():
        rule_id = create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER).id
    api, _control = team_api()
    assert _allowed(api, LATER) is None
    if _on_postgresql(database_url):
        def listening() -> bool:
            return any(t.name == "cors-policy-listener" and t.is_alive()
                       for t in threading.enumerate())

        assert _eventually(listening, timeout=10), "database mode listens on PostgreSQL"
    with app.app_context():
        add_origin(rule_id, LATER, actor=TESTER)
    assert _eventually(lambda: _allowed(api, LATER) == LATER, timeout=10)


def test_a_refused_origin_lands_in_the_request_log(app, team_api, database_url):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    api, control = team_api()
    for _ in range(3):
        assert _allowed(api, STRANGER) is None
    assert _allowed(api, ORIGIN) == ORIGIN  # allowed requests are not logged
    control.close()  # writes what is pending
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT origin, rule_path, reason, mode, count, path, method "
                "FROM request_log")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [
        (STRANGER, "/api/*", ORIGIN_NOT_ALLOWED, ENFORCE, 3, "/api/orders", "GET")]


def test_without_the_request_log_nothing_is_written(app, team_api, database_url):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    api, control = team_api(request_log=False)
    assert control.listeners == []
    assert _allowed(api, STRANGER) is None
    control.close()
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM request_log")).scalar() == 0
    finally:
        engine.dispose()


def test_close_stops_every_thread_it_started_and_releases_the_database(app, team_api):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    before = set(threading.enumerate())
    api, control = team_api()
    assert _allowed(api, STRANGER) is None  # starts the poller and the flusher
    started = [t for t in set(threading.enumerate()) - before if t.name in WORKERS]
    assert {t.name for t in started} >= {"cors-policy-poller", "cors-log-flusher"}
    engine = control.cache.source.engine
    control.close()
    assert [t.name for t in started if t.is_alive()] == []
    assert engine.pool.checkedout() == 0
    control.close()  # closing twice does no harm
    assert _allowed(api, ORIGIN) == ORIGIN  # the last policy loaded stays in service


def _processes(database_url: str) -> list[tuple]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(
                "SELECT pid, policy_version FROM engine_processes"))]
    finally:
        engine.dispose()


def test_with_the_heartbeat_a_serving_process_is_listed_until_it_closes(
        app, team_api, database_url):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    api, control = team_api(heartbeat=True)
    served = api.test_client().get("/api/orders", headers={"Origin": ORIGIN},
                                   environ_base={"SERVER_SOFTWARE": "gunicorn/23.0"})
    assert served.headers["Access-Control-Allow-Origin"] == ORIGIN
    control.cache.refresh()  # a policy check: the heartbeat reports after it
    version = control.cache.status().version
    assert _processes(database_url) == [(os.getpid(), version)]
    control.close()
    assert _processes(database_url) == []


def test_without_the_heartbeat_no_process_is_listed(app, team_api, database_url):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    api, control = team_api()
    api.test_client().get("/api/orders", headers={"Origin": ORIGIN},
                          environ_base={"SERVER_SOFTWARE": "gunicorn/23.0"})
    control.cache.refresh()
    assert _processes(database_url) == []


@pytest.mark.parametrize(("options", "problem"), [
    ({}, "none"),
    ({"source": object(), "database_url": "sqlite://"}, "source and database_url"),
])
def test_exactly_one_policy_source_is_required(options, problem):
    with pytest.raises(TypeError, match=f"exactly one policy source.*not {problem}"):
        CorsControl(Flask("team_api"), **options)


def test_a_database_other_than_postgresql_or_sqlite_is_refused_with_why(database_url):
    api = Flask("team_api")
    with pytest.raises(ValueError, match="names a mysql database.*PostgreSQL or SQLite"):
        CorsControl(api, database_url="mysql://u@127.0.0.1/cors")
