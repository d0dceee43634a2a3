"""The engine at runtime: picking up changes, failing static, failing closed, /healthz."""

from __future__ import annotations

import gc
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import close_app
from app.extensions import db
from app.models import EngineProcess
from app.runtime import get_heartbeat
from app.services.access import Actor
from app.services.policy import add_origin, create_rule, remove_origin
from cors_control import PolicyCache, get_control
from cors_control.cache import load_policy
from cors_control.database import DatabasePolicySource
from cors_control.snapshot import OriginEntry, RuleSpec

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"
ORIGIN = "https://app.example.com"
TESTER = Actor("tester", "cli")


def test_change_committed_elsewhere_is_served_without_restart(app, client):
    with app.app_context():
        rule = create_rule({"path": "/api/*"}, actor=TESTER)
        rule_id = rule.id
    assert "Access-Control-Allow-Origin" not in client.get(
        "/api/orders", headers={"Origin": ORIGIN}).headers
    with app.app_context():
        add_origin(rule_id, ORIGIN, actor=TESTER)
    # The poller (interval 0.05 s in tests) picks the change up by itself.
    assert _eventually(lambda: client.get("/api/orders", headers={"Origin": ORIGIN})
                       .headers.get("Access-Control-Allow-Origin") == ORIGIN)


def test_steady_state_requests_do_not_query_the_database(app, client):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    cache = get_control(app).cache
    cache.stop()  # no poller: only the request path could touch the database now
    cache.refresh()
    engine = cache.source.engine
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    import sqlalchemy as sa

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(20):
            response = client.get("/api/orders", headers={"Origin": ORIGIN})
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert statements == []


def test_last_good_policy_is_served_while_the_database_is_unreachable(app, client, caplog):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    cache = get_control(app).cache
    cache.stop()
    cache.refresh()
    good_source = cache.source
    cache.source = DatabasePolicySource.from_url(UNREACHABLE)
    with caplog.at_level(logging.ERROR, logger="cors_control"):
        for _ in range(3):
            cache.refresh()
            response = client.get("/api/orders", headers={"Origin": ORIGIN})
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    outage_logs = [r for r in caplog.records if r.name == "cors_control" and r.levelno >= 40]
    assert len(outage_logs) == 1, "an outage is logged once, not once per check"
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json["stale"] is True and health.json["policy_version"] >= 1

    cache.source.dispose()
    cache.source = good_source
    cache.refresh()
    assert cache.last_error is None
    assert "stale" not in client.get("/healthz").json


def test_process_that_never_loaded_a_policy_refuses_cross_origin_requests(make_app):
    app = make_app(CORS_DATABASE_URL=UNREACHABLE)
    client = app.test_client()
    preflight = client.options("/api/orders", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT"})
    assert preflight.status_code == 403
    assert b"policy" in preflight.data
    actual = client.get("/api/orders", headers={"Origin": ORIGIN})
    assert actual.status_code == 200
    assert not [h for h in actual.headers.keys() if h.lower().startswith("access-control-")]
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["status"] == "unavailable" and health.json["reason"]


def test_healthz_reports_the_loaded_policy_version(app, client):
    with app.app_context():
        create_rule({"path": "/api/*"}, actor=TESTER)
    get_control(app).cache.refresh()
    body = client.get("/healthz").json
    assert body["status"] == "ok" and body["policy_version"] == 1


def test_healthz_and_admin_never_carry_cors_headers(app, client, policy):
    policy({"path": "/*", "origins": [ORIGIN]})
    for path in ("/healthz", "/admin/"):
        response = client.get(path, headers={"Origin": ORIGIN})
        assert "Access-Control-Allow-Origin" not in response.headers, path


@pytest.mark.slow
def test_two_server_processes_sharing_the_database_serve_a_change(app, database_url, tmp_path):
    """Two gunicorn servers (one with two workers) on the test database; a change committed
    by this process is served by every worker of both, with no restart."""
    with app.app_context():
        rule_id = create_rule({"path": "/api/*"}, actor=TESTER).id
    interval = 0.5
    servers = [_start_server(database_url, tmp_path, workers=w, interval=interval)
               for w in (1, 2)]
    try:
        for _, port in servers:
            _wait_for_health(port)
            assert _acao(port) is None
        with app.app_context():
            add_origin(rule_id, ORIGIN, actor=TESTER)
        changed_at = time.monotonic()
        for _, port in servers:
            assert _eventually(lambda p=port: all(_acao(p) == ORIGIN for _ in range(8)),
                               timeout=interval + 2)
        # Seen by every worker well within a second of the interval.
        assert time.monotonic() - changed_at < interval + 2
        with app.app_context():
            remove_origin(rule_id, ORIGIN, actor=TESTER)
        for _, port in servers:
            assert _eventually(lambda p=port: all(_acao(p) is None for _ in range(8)),
                               timeout=interval + 2)
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=10)


def _start_server(database_url: str, tmp_path: Path, *, workers: int, interval: float):
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CORS_REFRESH_INTERVAL": str(interval),
        "SECRET_KEY": "test-secret-key",
        "INSTANCE_PATH": str(tmp_path / f"instance-{port}"),
        "DEMO_POLICY": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env,
    )
    return process, port


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_health(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"server on port {port} did not become healthy")


def _acao(port: int) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/orders",
                                     headers={"Origin": ORIGIN})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers.get("Access-Control-Allow-Origin")


def _eventually(check, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_excluded_prefixes_cover_their_tree_but_not_longer_names(app, client, policy):
    policy({"path": "/*", "origins": [ORIGIN]})
    assert "Access-Control-Allow-Origin" not in client.get(
        "/admin/rules", headers={"Origin": ORIGIN}).headers
    # /administrator is not /admin: governed by the /* rule (a 404 with CORS headers).
    response = client.get("/administrator", headers={"Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


class _OnePolicy:
    """A policy source held in memory: version 1, no rules, no tenants."""

    def current_version(self) -> int:
        return 1

    def load_with_tenants(self):
        return 1, [], []


def test_check_listeners_run_in_order_and_a_failing_one_does_not_stop_the_next(caplog):
    cache = PolicyCache(_OnePolicy())
    heard: list[str] = []

    def failing(cache: PolicyCache) -> None:
        heard.append("failing")
        raise RuntimeError("listener broke")

    cache.add_check_listener(failing)
    cache.add_check_listener(lambda checked: heard.append(f"next saw {checked.snapshot.version}"))
    with caplog.at_level(logging.ERROR, logger="cors_control"):
        assert cache.refresh() is True
    assert heard == ["failing", "next saw 1"]
    assert "check listener failed" in caplog.text


def test_each_policy_check_reports_the_process_and_its_version(app):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    cache = get_control(app).cache
    cache.stop()
    get_heartbeat(app).serve()  # as the first request a server hands over does
    cache.refresh()
    with app.app_context():
        process = db.session.get(EngineProcess, f"{socket.gethostname()[:150]}:{os.getpid()}")
        assert process is not None
        assert process.policy_version == cache.snapshot.version


def test_close_app_stops_the_poller_and_writes_the_pending_request_log(make_app):
    app = make_app(REQUEST_LOG_FLUSH_INTERVAL=3600)
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    client = app.test_client()
    client.get("/api/orders", headers={"Origin": "https://evil.example.net"})
    poller = get_control(app).cache._thread
    assert poller is not None and poller.is_alive()

    close_app(app)

    assert not poller.is_alive()
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as conn:
            logged = conn.execute(sa.text("SELECT origin, count FROM request_log")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in logged] == [("https://evil.example.net", 1)]


def test_a_forked_child_opens_its_own_policy_database_connections(app):
    """gunicorn --preload forks workers from a master that may have connected: a child must
    not use the parent's pooled connections (two processes on one socket)."""
    from app.runtime.wiring import connect_policy_database

    engine = connect_policy_database(app)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert engine.pool.checkedin() == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports how many pooled connections it inherited
        os.write(write, str(engine.pool.checkedin()).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"0"
    assert engine.pool.checkedin() == 1  # the parent keeps its own
    engine.dispose()


class _WatchedPolicy:
    """A policy source that notes whether the cyclic collector ran while it loaded, and can
    fail as a database does."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.collector_on: bool | None = None

    def current_version(self) -> int:
        return 1

    def load_with_tenants(self):
        self.collector_on = gc.isenabled()
        if self.fail:
            raise RuntimeError("the database went away")
        return 1, [RuleSpec("/api/*", origins=(OriginEntry("https://app.example.com"),))], []


@pytest.mark.parametrize("fail", [False, True])
def test_a_full_load_pauses_the_cyclic_collector_and_turns_it_back_on(fail):
    source = _WatchedPolicy(fail=fail)
    assert gc.isenabled()
    if fail:
        with pytest.raises(RuntimeError, match="went away"):
            load_policy(source)
    else:
        assert load_policy(source).origin_count == 1
    assert source.collector_on is False
    assert gc.isenabled()


def test_a_full_load_leaves_a_collector_turned_off_by_the_application_off():
    source = _WatchedPolicy()
    gc.disable()
    try:
        load_policy(source)
        assert not gc.isenabled()
    finally:
        gc.enable()
