"""Push on PostgreSQL: a change announces its version with NOTIFY in its own transaction, and
every process listening reloads without waiting for its next poll.

Tests marked ``postgresql`` need LISTEN/NOTIFY: they run when ``TEST_DATABASE_URL`` names a
PostgreSQL database and are deselected (not skipped) on SQLite, see tests/conftest.py. The
tests of configuration and of monotonic reloads run everywhere.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from app.runtime import get_listener
from app.runtime.wiring import notify_url
from app.services.access import Actor
from app.services.changes import Unchanged, policy_change, policy_version
from app.services.policy import add_origin, create_rule
from app.services.tokens import create_token
from cors_control import PolicyCache, get_control
from cors_control.database.listener import APPLICATION_NAME, libpq_url
from cors_control.snapshot import RuleSpec

ROOT = Path(__file__).resolve().parent.parent
TESTER = Actor("tester", "cli")
ORIGIN = "https://app.example.com"
OTHER = "https://other.example.com"
THIRD = "https://third.example.com"
CHANNEL = "cors_policy"
# Long enough that only a push (or a reconnect's catch-up) can explain a change being served.
NEVER = 60


# -- configuration (every backend) ----------------------------------------------------------


def test_the_listener_follows_the_policy_database_unless_told_otherwise():
    primary = "postgresql+psycopg://cors@primary.internal/cors"
    replica = "postgresql+psycopg://cors@replica.internal/cors"
    assert notify_url({"SQLALCHEMY_DATABASE_URI": primary}) == primary
    # A read replica delivers no notifications: point the listener at the primary.
    assert notify_url({"SQLALCHEMY_DATABASE_URI": primary, "CORS_DATABASE_URL": replica,
                       "CORS_NOTIFY_URL": primary}) == primary
    assert notify_url({"SQLALCHEMY_DATABASE_URI": primary, "CORS_NOTIFY_URL": "off"}) is None
    assert notify_url({"SQLALCHEMY_DATABASE_URI": "sqlite:///x.db"}) is None


def test_on_sqlite_or_with_push_off_the_process_polls_only(make_app, database_url):
    app = make_app(CORS_NOTIFY_URL="off")
    assert get_listener(app) is None
    assert get_control(app).cache.start_listeners == []
    if not database_url.startswith("postgresql"):
        assert get_listener(make_app()) is None


def test_a_bad_channel_name_is_refused_at_start_with_what_to_use(make_app):
    with pytest.raises(ValueError, match="CORS_NOTIFY_CHANNEL 'cors-policy; drop'.*lower-case"):
        make_app(CORS_NOTIFY_URL="postgresql+psycopg://u@127.0.0.1:1/x",
                 CORS_NOTIFY_CHANNEL="cors-policy; drop")


def test_a_sqlalchemy_url_is_given_to_libpq_without_its_driver_name():
    assert libpq_url("postgresql+psycopg://u:p%40ss@db:5433/cors?sslmode=require") == \
        "postgresql://u:p%40ss@db:5433/cors?sslmode=require"


# -- monotonic reloads (every backend) -------------------------------------------------------


class _Versions:
    """A policy source whose version the test sets, as a lagging replica would report it."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.loads = 0

    def current_version(self) -> int:
        return self.version

    def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
        self.loads += 1
        return self.version, [], []


def test_a_process_never_installs_an_older_version_than_it_serves(caplog):
    source = _Versions(5)
    cache = PolicyCache(source, interval=NEVER)
    assert cache.refresh() is True and cache.snapshot and cache.snapshot.version == 5
    source.version = 3  # a replica behind the one read before, or a restored database
    with caplog.at_level(logging.WARNING, logger="cors_control"):
        assert cache.refresh() is False
        assert cache.refresh() is False
    assert cache.snapshot.version == 5
    assert source.loads == 1, "an older version is not even loaded"
    warnings = [r.getMessage() for r in caplog.records if r.name == "cors_control"]
    assert len(warnings) == 1 and "older than the 5" in warnings[0]
    source.version = 6
    assert cache.refresh() is True and cache.snapshot.version == 6


def test_an_older_version_read_while_loading_is_not_installed():
    source = _Versions(5)
    cache = PolicyCache(source, interval=NEVER)
    cache.refresh()

    class _Behind(_Versions):
        def load_with_tenants(self) -> tuple[int, list[RuleSpec], list[str]]:
            return 4, [], []  # the version check saw 7, the load a lagging copy

    cache.source = _Behind(7)
    assert cache.refresh() is False
    assert cache.snapshot is not None and cache.snapshot.version == 5


# -- NOTIFY in the change's transaction (PostgreSQL) -----------------------------------------


@pytest.fixture
def listening(database_url):
    """A plain psycopg session listening on the channel; ``receive()`` the payloads sent."""
    conn = psycopg.connect(libpq_url(database_url), autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")

    def receive(wait: float = 1.0) -> list[str]:
        return [n.payload for n in conn.notifies(timeout=wait)]

    yield receive
    conn.close()


@pytest.mark.postgresql
def test_a_committed_change_announces_its_version(app, listening):
    with app.app_context():
        rule = create_rule({"path": "/api/*"}, actor=TESTER)
        add_origin(rule.id, ORIGIN, actor=TESTER)
        version = policy_version()
    assert listening() == [str(version - 1), str(version)]


@pytest.mark.postgresql
def test_a_change_rolled_back_announces_nothing(app, listening):
    with app.app_context():
        with pytest.raises(RuntimeError), policy_change(TESTER):
            raise RuntimeError("the change fails half-way")
        with pytest.raises(Unchanged), policy_change(TESTER):
            raise Unchanged(None)  # nothing to do: rolled back too
        with policy_change(TESTER, bump_version=False):
            pass  # users and tokens do not move the policy
    assert listening(wait=0.5) == []


# -- the listener in a process (PostgreSQL) -------------------------------------------------


def _served(client, origin: str = ORIGIN) -> str | None:
    return client.get("/api/orders", headers={"Origin": origin}).headers.get(
        "Access-Control-Allow-Origin")


def _eventually(check, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def _terminate(database_url: str, application_name: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name"), {"name": application_name}).all())
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_a_listening_process_reloads_on_a_change_made_elsewhere(make_app, database_url, caplog):
    writer = make_app()
    reader = make_app(CORS_REFRESH_INTERVAL=NEVER, CORS_LISTEN_REFRESH_INTERVAL=NEVER)
    with writer.app_context():
        rule_id = create_rule({"path": "/api/*"}, actor=TESTER).id
    client = reader.test_client()
    listener = get_listener(reader)
    assert listener is not None
    assert _served(client) is None  # the first request starts the poller and the listener
    assert _eventually(lambda: listener.connected)
    with writer.app_context():
        add_origin(rule_id, ORIGIN, actor=TESTER)
    assert _eventually(lambda: _served(client) == ORIGIN)

    # Killed from the server's side: the listener reconnects and catches up by itself.
    with caplog.at_level(logging.INFO, logger="cors_control"):
        assert _terminate(database_url, listener.application_name) == 1
        assert _eventually(lambda: listener.reconnects == 1 and listener.connected)
    messages = [r.getMessage() for r in caplog.records if r.name == "cors_control"]
    assert any("lost its connection" in m for m in messages), messages
    with writer.app_context():
        add_origin(rule_id, OTHER, actor=TESTER)
    assert _eventually(lambda: _served(client, OTHER) == OTHER)
    assert get_control(reader).cache.interval == NEVER


@pytest.mark.postgresql
def test_close_app_stops_the_listener_and_closes_its_connection(make_app, database_url):
    from app import close_app

    app = make_app()
    listener = get_listener(app)
    app.test_client().get("/api/orders")
    assert _eventually(lambda: listener.connected)
    close_app(app, flush_log=False)
    assert not listener.connected
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert not conn.execute(sa.text(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = :name"),
                {"name": listener.application_name}).all()
    finally:
        engine.dispose()


@pytest.mark.postgresql
def test_a_forked_child_leaves_the_parents_listening_connection_alone(make_app):
    """gunicorn --preload forks workers: a child starts its own listener and must not end
    the parent's session on the connection it inherited."""
    import gc

    writer = make_app()
    app = make_app(CORS_REFRESH_INTERVAL=NEVER, CORS_LISTEN_REFRESH_INTERVAL=NEVER)
    with writer.app_context():
        rule_id = create_rule({"path": "/api/*"}, actor=TESTER).id
    client = app.test_client()
    listener = get_listener(app)
    _served(client)
    assert _eventually(lambda: listener.connected)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: not listening (yet), and drops what it inherited
        os.write(write, b"1" if listener.connected else b"0")
        del listener
        gc.collect()
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"0"
    with writer.app_context():
        add_origin(rule_id, ORIGIN, actor=TESTER)
    assert _eventually(lambda: _served(client) == ORIGIN)
    assert listener.connected and listener.reconnects == 0


# -- two server processes (PostgreSQL) ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgresql
def test_a_change_through_one_server_is_pushed_to_another_that_polls_every_minute(
        app, database_url, tmp_path):
    """Two gunicorn servers, both polling every 60 s: a change made through the JSON API of
    the first is served by the second; after the second's listening connection is killed
    on the server side, the next change still arrives."""
    with app.app_context():
        rule_id = create_rule({"path": "/api/*"}, actor=TESTER).id
        secret = create_token("push-test", "admin", actor=TESTER).secret
    servers = [_start_server(database_url, tmp_path) for _ in range(2)]
    try:
        (_, first), (_, second) = servers
        for _, port in servers:
            _wait_for_health(port)
        assert _acao(second, ORIGIN) is None
        pid = _health(second)["pid"]
        assert _eventually(lambda: _listening(database_url, pid))

        _add_origin_through_api(first, secret, rule_id, ORIGIN)
        assert _eventually(lambda: _acao(second, ORIGIN) == ORIGIN)

        assert _terminate(database_url, f"{APPLICATION_NAME}/{pid}") == 1
        _add_origin_through_api(first, secret, rule_id, THIRD)
        assert _eventually(lambda: _acao(second, THIRD) == THIRD)
        assert _eventually(lambda: _listening(database_url, pid))  # connected again
        assert _health(second)["pid"] == pid
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=10)


def _start_server(database_url: str, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    from tests.test_runtime import _free_port

    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CORS_REFRESH_INTERVAL": str(NEVER),
        "CORS_LISTEN_REFRESH_INTERVAL": str(NEVER),
        "SECRET_KEY": "test-secret-key",
        "INSTANCE_PATH": str(tmp_path / f"instance-{port}"),
        "DEMO_POLICY": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env,
    )
    return process, port


def _wait_for_health(port: int) -> None:
    from tests.test_runtime import _wait_for_health as wait

    wait(port)


def _health(port: int) -> dict:
    import json

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return json.load(response)


def _acao(port: int, origin: str) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/orders",
                                     headers={"Origin": origin})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers.get("Access-Control-Allow-Origin")


def _add_origin_through_api(port: int, secret: str, rule_id: int, origin: str) -> None:
    quoted = urllib.parse.quote(origin, safe="")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/api/v1/rules/{rule_id}/origins/{quoted}",
        method="PUT", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def _listening(database_url: str, pid: int) -> bool:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = :name"),
                {"name": f"{APPLICATION_NAME}/{pid}"}).all())
    finally:
        engine.dispose()
