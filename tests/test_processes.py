"""Which processes report to the overview: only those that serve, and only while they do.

The heartbeat is armed by the first request a WSGI server hands over; CLI commands and
scripts never register. A graceful stop deletes the process's row. Real servers (``flask run``
and gunicorn) and real CLI commands run here as subprocesses on the test database.
"""

from __future__ import annotations

import os
import signal
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
from app.config import ROOT
from app.extensions import db
from app.models import EngineProcess
from app.runtime import get_heartbeat
from app.services.access import Actor
from app.services.policy import add_origin, create_rule
from cors_control import get_control

TESTER = Actor("test", "cli")
ORIGIN = "https://app.example.com"


def _rows(app) -> dict[str, int | None]:
    with app.app_context():
        return {row.id: row.policy_version
                for row in db.session.scalars(sa.select(EngineProcess))}


def _this_process() -> str:
    return f"{socket.gethostname()[:150]}:{os.getpid()}"


def test_a_process_that_only_runs_commands_or_test_requests_never_reports(app, client, policy):
    policy({"path": "/api/*", "origins": [ORIGIN]})
    client.get("/api/orders", headers={"Origin": ORIGIN})  # Flask's test client: no server
    get_control(app).cache.refresh()
    assert _rows(app) == {}


def test_the_first_request_a_server_hands_over_arms_the_heartbeat(app, client, policy):
    policy({"path": "/api/*", "origins": [ORIGIN]})
    cache = get_control(app).cache
    client.get("/api/orders", environ_overrides={"SERVER_SOFTWARE": "gunicorn/23.0.0"})
    assert get_heartbeat(app).serving
    cache.refresh()  # the poller's next check writes the row (never the request thread)
    assert _rows(app) == {_this_process(): cache.snapshot.version}


def test_a_new_version_is_reported_soon_not_at_the_next_beat(app, policy):
    policy({"path": "/api/*"})
    heartbeat = get_heartbeat(app)
    heartbeat.every = 3600  # no periodic beat during the test
    heartbeat.report_delay = 0.05
    heartbeat.serve()
    cache = get_control(app).cache
    cache.stop()
    cache.refresh()
    first = _rows(app)[_this_process()]
    with app.app_context():
        rule_id = create_rule({"path": "/api/other"}, actor=TESTER).id
        add_origin(rule_id, ORIGIN, actor=TESTER)
    cache.refresh()
    deadline = time.monotonic() + 10
    while _rows(app)[_this_process()] == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows(app)[_this_process()] == cache.snapshot.version > first


def test_a_new_version_is_not_written_in_the_moment_of_the_reload(app, policy):
    """Every process of a fleet reloads a change at once; their reports wait a moment, so
    the writes do not slow the reloads. A stop cancels the pending report."""
    policy({"path": "/api/*"})
    heartbeat = get_heartbeat(app)
    heartbeat.every = 3600
    heartbeat.report_delay = 3600
    heartbeat.serve()
    cache = get_control(app).cache
    cache.stop()
    cache.refresh()  # the first report is written at once: nothing was reported before
    first = _rows(app)[_this_process()]
    with app.app_context():
        add_origin(create_rule({"path": "/api/other"}, actor=TESTER).id, ORIGIN, actor=TESTER)
    cache.refresh()
    assert cache.snapshot.version > first
    assert _rows(app)[_this_process()] == first
    pending = heartbeat._pending
    assert pending is not None and pending.is_alive()
    heartbeat.withdraw()
    assert heartbeat._pending is None
    pending.join(timeout=5)
    assert not pending.is_alive()


def test_a_graceful_stop_withdraws_the_process_and_it_reports_no_more(make_app):
    app = make_app()
    with app.app_context():
        create_rule({"path": "/api/*"}, actor=TESTER)
    heartbeat = get_heartbeat(app)
    heartbeat.serve()
    get_control(app).cache.refresh()
    assert _this_process() in _rows(app)
    close_app(app)
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM engine_processes")).all() == []
    finally:
        engine.dispose()
    heartbeat(get_control(app).cache)  # a late check after the stop writes nothing
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM engine_processes")).all() == []
    finally:
        engine.dispose()


def test_a_stop_does_not_delete_another_process_s_row(app):
    """A process that never served withdraws nothing, not even a row with its own id
    left by an earlier process with the same pid."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    with app.app_context():
        db.session.add(EngineProcess(id=_this_process(), host="h", pid=os.getpid(),
                                     policy_version=1, last_check=now, started_at=now,
                                     last_error=""))
        db.session.commit()
    get_heartbeat(app).withdraw()
    assert _this_process() in _rows(app)


# -- real processes ------------------------------------------------------------------------


def _env(database_url: str, tmp_path: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "FLASK_APP": "wsgi.py",
        "DATABASE_URL": database_url,
        "CORS_REFRESH_INTERVAL": "0.2",
        "SECRET_KEY": "test-secret-key",
        "INSTANCE_PATH": str(tmp_path / f"instance-{name}"),
        "DEMO_POLICY": "0",
        "CORS_CONTROL_ACTOR": "test-runner",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(port: int, path: str = "/api/orders") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Origin": ORIGIN})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _wait_until_serving(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _get(port, "/healthz")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise AssertionError(f"no server answered on port {port}")


def _eventually(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_flask_run_reports_while_it_serves_and_cli_commands_never_do(app, database_url,
                                                                     tmp_path):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    env = _env(database_url, tmp_path, "cli")
    # Commands that read and write the policy, before any server runs.
    assert _flask(env, "cors", "check", ORIGIN, "/api/orders").returncode == 0
    assert _flask(env, "tokens", "create", "ci", "--role", "viewer").returncode == 0
    assert _rows(app) == {}

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "flask", "run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=_env(database_url, tmp_path, "server"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_serving(port)
        assert _eventually(lambda: f"{socket.gethostname()[:150]}:{server.pid}" in _rows(app))
        # A command run while the server serves does not appear either.
        assert _flask(env, "cors", "check", "https://other.example",
                      "/api/orders").returncode == 1
        get_control(app).cache.refresh()
        assert list(_rows(app)) == [f"{socket.gethostname()[:150]}:{server.pid}"]
        server.send_signal(signal.SIGINT)  # Ctrl-C: a graceful stop
        server.wait(timeout=20)
        assert _rows(app) == {}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


@pytest.mark.slow
def test_gunicorn_workers_report_and_withdraw_on_sigterm(app, database_url, tmp_path):
    with app.app_context():
        create_rule({"path": "/api/*", "origins": [ORIGIN]}, actor=TESTER)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=_env(database_url, tmp_path, "gunicorn"))
    try:
        _wait_until_serving(port)
        for _ in range(20):
            _get(port)
        assert _eventually(lambda: len(_rows(app)) >= 1)
        hosts = {row_id.rsplit(":", 1)[0] for row_id in _rows(app)}
        assert hosts == {socket.gethostname()[:150]}
        assert f"{socket.gethostname()[:150]}:{server.pid}" not in _rows(app)  # the master
        server.terminate()
        server.wait(timeout=40)
        assert _rows(app) == {}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
