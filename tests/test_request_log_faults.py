"""The request log under faults: hostile bytes, rows the database refuses, concurrent
flushers, shutdown, and what /healthz and /metrics say meanwhile.

Written for PostgreSQL (``TEST_DATABASE_URL``), where a NUL byte or a lock cycle used to stop
the log; every case runs on SQLite too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from app.request_log import get_request_log
from cors_control.database import DatabaseRefusalSink, create_source_engine
from cors_control.decision import ORIGIN_NOT_ALLOWED, Decision
from cors_control.refusals import RecorderSettings, RefusalRecorder

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "https://app.example.com"
EVIL = "https://evil.example.net"
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"
POISON = "https://poison.example.net"
RULE = {"path": "/api/*", "origins": [ORIGIN], "methods": ["GET", "PUT"],
        "allow_headers": ["content-type"]}
TENANT_RULE = {**RULE, "tenant_selector": {"source": "header", "key": "X-Tenant",
                                           "unknown": "shared"}}


def _load(app, *rules: dict) -> None:
    """The policy fixture, for an app built with its own settings."""
    from app.services.policy import Actor, import_policy
    from cors_control import get_control

    with app.app_context():
        import_policy({"rules": list(rules)}, actor=Actor("test", "cli"), replace=True)
    get_control(app).cache.refresh()


def _stored(engine_or_url) -> dict[str, int]:
    """Origin -> count, summed over buckets, as the database holds it."""
    engine = sa.create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT origin, SUM(count) FROM request_log GROUP BY origin")).all()
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
    return {origin: int(total) for origin, total in rows}


def _columns(database_url: str, origin_like: str = "%") -> list[dict]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(
                "SELECT * FROM request_log WHERE origin LIKE :o ORDER BY id"),
                {"o": origin_like})]
    finally:
        engine.dispose()


def _neighbours(client) -> None:
    """Two ordinary refusals that share the batch of the hostile one."""
    for origin in ("https://one.example.net", "https://two.example.net"):
        client.get("/api/orders", headers={"Origin": origin})


# -- hostile bytes ---------------------------------------------------------------------------


def _preflight(client, **headers) -> None:
    client.options("/api/orders", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PUT", **headers})


NUL_CASES = {
    # field: (rule, send the request, the stored column, its expected value)
    "origin": (RULE, lambda c: c.get("/api/orders", headers={"Origin": "https://a\0.example"}),
               "origin", "https://a\\x00.example"),
    "path": (RULE, lambda c: c.get("/api/orders/%00x", headers={"Origin": EVIL}),
             "path", "/api/orders/\\x00x"),
    "user agent": (RULE, lambda c: c.get("/api/orders", headers={
        "Origin": EVIL, "User-Agent": "Agent\0/1"}), "user_agent", "Agent\\x00/1"),
    "referer": (RULE, lambda c: c.get("/api/orders", headers={
        "Origin": EVIL, "Referer": "https://evil.example.net/\0"}),
        "referer", "https://evil.example.net/\\x00"),
    "requested headers": (RULE, lambda c: _preflight(c, **{
        "Access-Control-Request-Headers": "x-a\0b"}), "request_headers", "x-a\\x00b"),
    "detail (requested header)": (RULE, lambda c: _preflight(c, **{
        "Access-Control-Request-Headers": "x-a\0b"}), "detail", "x-a\\x00b"),
    "requested method and detail": (RULE, lambda c: c.options("/api/orders", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PU\0T"}),
        "request_method", "PU\\x00T"),
    "tenant": (TENANT_RULE, lambda c: c.get("/api/orders", headers={
        "Origin": EVIL, "X-Tenant": "ac\0me"}), "tenant", "ac\\x00me"),
}


@pytest.mark.parametrize("field", list(NUL_CASES))
def test_a_nul_byte_in_any_stored_field_is_stored_escaped_with_the_rest_of_its_batch(
        app, client, policy, database_url, field):
    rule, send, column, expected = NUL_CASES[field]
    policy(rule)
    _neighbours(client)
    send(client)
    recorder = get_request_log(app).recorder
    assert recorder.flush() == 3
    assert (recorder.pending_keys, recorder.flush_failures, recorder.quarantined_rows) == (0, 0, 0)
    rows = _columns(database_url)
    assert len(rows) == 3
    assert {"https://one.example.net", "https://two.example.net"} <= {r["origin"] for r in rows}
    hostile = [r for r in rows if r[column] == expected]
    assert len(hostile) == 1, [r[column] for r in rows]
    assert not [name for r in rows for name, value in r.items()
                if isinstance(value, str) and "\0" in value]


# -- a row the database refuses --------------------------------------------------------------


@pytest.fixture
def poisoned_origin(database_url):
    """A trigger that makes the database refuse any row whose origin is POISON: a real
    refusal of one row's data, whatever the reason might be in production."""
    engine = sa.create_engine(database_url)
    if engine.dialect.name == "postgresql":
        create = [
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.origin = '{POISON}' THEN RAISE EXCEPTION 'poisoned row' "
            "USING ERRCODE = 'data_exception'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON request_log "
            "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ]
        drop = ["DROP TRIGGER IF EXISTS refuse_poison ON request_log",
                "DROP FUNCTION IF EXISTS refuse_poison()"]
    else:
        create = [f"CREATE TRIGGER refuse_poison BEFORE INSERT ON request_log "
                  f"WHEN NEW.origin = '{POISON}' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"]
        drop = ["DROP TRIGGER IF EXISTS refuse_poison"]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(sa.text(statement))
    try:
        yield POISON
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(sa.text(statement))
        engine.dispose()


def test_a_row_refused_on_its_own_is_quarantined_and_the_rest_is_stored(
        make_app, database_url, poisoned_origin, caplog):
    app = make_app(METRICS_ENABLED=True)
    _load(app, RULE)
    client = app.test_client()
    origins = [f"https://ok{i}.example.net" for i in range(5)]
    with caplog.at_level(logging.WARNING, logger="cors_control"):
        for origin in origins[:2] + [poisoned_origin] * 3 + origins[2:]:
            client.get("/api/orders", headers={"Origin": origin})
        recorder = get_request_log(app).recorder
        assert recorder.flush() == 5
        assert recorder.flush() == 0  # nothing left behind to retry
    assert _stored(database_url) == dict.fromkeys(origins, 1)
    assert (recorder.quarantined_rows, recorder.quarantined_events) == (1, 3)
    assert recorder.pending_keys == 0 and recorder.health().failing_since is None
    lines = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(lines) == 1 and f"origin='{poisoned_origin}'" in lines[0]
    assert "3 events" in lines[0]
    text = client.get("/metrics").get_data(as_text=True)
    assert "cors_log_quarantined_rows_total 1.0" in text
    assert "cors_log_quarantined_events_total 3.0" in text
    assert client.get("/healthz").json["request_log"]["quarantined_rows"] == 1


def test_a_refused_row_is_quarantined_once_and_later_rows_are_unaffected(
        app, client, policy, database_url, poisoned_origin):
    policy(RULE)
    recorder = get_request_log(app).recorder
    client.get("/api/orders", headers={"Origin": poisoned_origin})
    recorder.flush()
    client.get("/api/orders", headers={"Origin": EVIL})
    assert recorder.flush() == 1
    assert _stored(database_url) == {EVIL: 1}
    assert recorder.quarantined_rows == 1


# -- concurrent flushers ---------------------------------------------------------------------


def _refusal_requests(count: int) -> list[Request]:
    return [Request(EnvironBuilder(path="/api/orders", headers={
        "Origin": f"https://k{index:03d}.example.net"}).get_environ()) for index in range(count)]


def test_two_recorders_flushing_the_same_keys_in_opposite_orders_lose_nothing(
        make_app, database_url):
    """Each round both recorders hold the same 500 keys, gathered in opposite orders, and
    flush at the same moment: with rows locked in key order neither waits on the other in a
    cycle (on PostgreSQL a lock cycle is a deadlock, and one flush fails). ``make_app`` only
    empties the database here."""
    requests = _refusal_requests(500)
    refusal = Decision(allowed=False, reason=ORIGIN_NOT_ALLOWED)
    recorders = [RefusalRecorder(DatabaseRefusalSink(create_source_engine(database_url)),
                                     RecorderSettings(flush_interval=3600)) for _ in range(2)]
    orders = [requests, requests[::-1]]
    rounds = 20
    barrier = threading.Barrier(2)

    def flush_at_once(recorder: RefusalRecorder) -> int:
        barrier.wait(timeout=30)
        return recorder.flush()

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for _ in range(rounds):
                for recorder, order in zip(recorders, orders, strict=True):
                    for request in order:
                        recorder.record(refusal, request)
                written = list(pool.map(flush_at_once, recorders))
                assert written == [500, 500]
        assert [r.flush_failures for r in recorders] == [0, 0]
        assert [r.pending_keys for r in recorders] == [0, 0]
        stored = _stored(recorders[0].sink.engine)
    finally:
        for recorder in recorders:
            recorder.stop(flush=False)
            recorder.sink.engine.dispose()
    assert len(stored) == 500
    assert set(stored.values()) == {2 * rounds}


# -- stopping --------------------------------------------------------------------------------


def _impatient_engine(url: str) -> sa.Engine:
    """An engine that gives up quickly on a locked table instead of waiting for it."""
    if url.startswith("postgresql"):
        return sa.create_engine(url, connect_args={"options": "-c lock_timeout=200"})
    return sa.create_engine(url, connect_args={"timeout": 0.2})


def _hold_the_table(url: str, locked: threading.Event, release: threading.Event) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("BEGIN"))
                conn.execute(sa.text("LOCK TABLE request_log IN EXCLUSIVE MODE"))
            else:
                conn.exec_driver_sql("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(timeout=30)
            conn.exec_driver_sql("COMMIT")
    finally:
        engine.dispose()


def test_the_exit_flush_retries_until_the_database_takes_the_rows(make_app, database_url):
    recorder = RefusalRecorder(DatabaseRefusalSink(_impatient_engine(database_url)),
                                  RecorderSettings(flush_interval=3600, exit_flush_seconds=30))
    refusal = Decision(allowed=False, reason=ORIGIN_NOT_ALLOWED)
    for request in _refusal_requests(10):
        recorder.record(refusal, request)
    locked, release = threading.Event(), threading.Event()
    # The lock is released once the first attempt has failed on it.
    sa.event.listen(recorder.sink.engine, "handle_error", lambda context: release.set())
    holder = threading.Thread(target=_hold_the_table, args=(database_url, locked, release))
    holder.start()
    try:
        assert locked.wait(timeout=30)
        recorder.stop(flush=True)
    finally:
        release.set()
        holder.join(timeout=30)
        recorder.sink.engine.dispose()
    assert recorder.flush_failures >= 1
    assert recorder.pending_keys == 0
    assert sum(_stored(database_url).values()) == 10


def test_the_exit_flush_gives_up_after_its_time_and_says_what_is_lost(caplog):
    recorder = RefusalRecorder(DatabaseRefusalSink(create_source_engine(UNREACHABLE)),
                                  RecorderSettings(flush_interval=3600, exit_flush_seconds=0.2))
    refusal = Decision(allowed=False, reason=ORIGIN_NOT_ALLOWED)
    for request in _refusal_requests(3) * 2:
        recorder.record(refusal, request)
    try:
        with caplog.at_level(logging.ERROR, logger="cors_control"):
            recorder.stop(flush=True)
    finally:
        recorder.sink.engine.dispose()
    lines = [r.getMessage() for r in caplog.records if "before the process stopped" in
             r.getMessage()]
    assert len(lines) == 1 and "6 events in 3 keys" in lines[0]


@pytest.mark.slow
def test_gunicorn_workers_stopped_with_refusals_pending_write_all_of_them(
        app, policy, database_url, tmp_path):
    """Two workers hold the same keys (a long flush interval keeps everything pending);
    SIGTERM; every refusal sent reaches the database."""
    policy(RULE)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key",
           "INSTANCE_PATH": str(tmp_path / "instance"), "DEMO_POLICY": "0",
           "REQUEST_LOG_FLUSH_INTERVAL": "3600", "REQUEST_LOG_EXIT_FLUSH_SECONDS": "20"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "60", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    origins = [f"https://k{index:03d}.example.net" for index in range(200)]
    sent = 0
    try:
        _wait_until_served(f"http://127.0.0.1:{port}/healthz", server)

        def refuse(origin: str) -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/orders",
                                             headers={"Origin": origin})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert "Access-Control-Allow-Origin" not in response.headers
                return response.status

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(refuse, origins * 10))
        sent = len(statuses)
        assert set(statuses) == {200}
        assert _stored(database_url) == {}  # everything is still pending in the workers
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=120)
    assert server.returncode == 0, errors
    stored = _stored(database_url)
    assert sum(stored.values()) == sent == 2000, errors
    assert stored == dict.fromkeys(origins, 10)


def _wait_until_served(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer 200 (server exit code {server.poll()})")


# -- what /healthz and /metrics say ----------------------------------------------------------


def test_a_failing_log_is_degraded_in_healthz_and_metrics_while_healthz_stays_200(
        make_app):
    app = make_app(METRICS_ENABLED=True, METRICS_TOKEN="s3cret-token")
    _load(app, RULE)
    client = app.test_client()
    recorder = get_request_log(app).recorder
    assert client.get("/healthz").json["request_log"] == {
        "status": "ok", "pending_keys": 0, "pending_events": 0,
        "oldest_pending_age_seconds": 0, "failing_for_seconds": None, "quarantined_rows": 0}
    good_engine = recorder.sink.engine
    recorder.sink.engine = create_source_engine(UNREACHABLE)
    try:
        for origin in (EVIL, EVIL, "https://other.example.net"):
            client.get("/api/orders", headers={"Origin": origin})
        assert recorder.flush() == 0
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json["status"] == "ok"
        log = health.json["request_log"]
        assert log["status"] == "degraded"
        assert (log["pending_keys"], log["pending_events"]) == (2, 3)
        assert log["oldest_pending_age_seconds"] >= 0 and log["failing_for_seconds"] >= 0
        assert "127.0.0.1" not in health.get_data(as_text=True)
        text = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}
                          ).get_data(as_text=True)
        assert "cors_log_flush_failing 1.0" in text
        assert "cors_log_pending_keys 2.0" in text and "cors_log_pending_events 3.0" in text
        assert "cors_log_oldest_pending_age_seconds " in text
        assert "cors_log_flush_failures_total 1.0" in text
    finally:
        recorder.sink.engine.dispose()
        recorder.sink.engine = good_engine
    assert recorder.flush() == 2
    log = client.get("/healthz").json["request_log"]
    assert (log["status"], log["pending_keys"], log["failing_for_seconds"]) == ("ok", 0, None)


def test_healthz_gives_a_generic_reason_during_a_database_outage(make_app, caplog):
    with caplog.at_level(logging.ERROR, logger="cors_control"):
        app = make_app(CORS_DATABASE_URL=UNREACHABLE)
        health = app.test_client().get("/healthz")
    assert health.status_code == 503
    assert health.json["reason"] == "the policy database is unreachable (details in the log)"
    text = health.get_data(as_text=True)
    for secret in ("127.0.0.1", "port", "postgres", "Operational", "refused"):
        assert secret not in text
    # The details are for the operator, in the server log.
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)


def test_healthz_of_a_stale_policy_gives_a_generic_error(app, client, policy):
    from cors_control import get_control
    from cors_control.database import DatabasePolicySource

    policy(RULE)
    cache = get_control(app).cache
    cache.stop()
    good_source = cache.source
    cache.source = DatabasePolicySource.from_url(UNREACHABLE)
    try:
        cache.refresh()
        health = client.get("/healthz")
    finally:
        cache.source.dispose()
        cache.source = good_source
    assert health.status_code == 200 and health.json["stale"] is True
    assert "unreachable" in health.json["error"]
    assert "127.0.0.1" not in health.get_data(as_text=True)


def test_metrics_without_a_token_answer_only_direct_loopback_requests(make_app, caplog):
    with caplog.at_level(logging.WARNING):
        app = make_app(METRICS_ENABLED=True)
    assert any("METRICS_ENABLED without METRICS_TOKEN" in r.getMessage()
               for r in caplog.records)
    client = app.test_client()
    for address in ("127.0.0.1", "::1"):
        local = client.get("/metrics", environ_base={"REMOTE_ADDR": address})
        assert local.status_code == 200 and b"cors_log_pending_keys" in local.data
    remote = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert remote.status_code == 403 and b"METRICS_TOKEN" in remote.data
    proxied = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                         headers={"X-Forwarded-For": "192.0.2.7"})
    assert proxied.status_code == 403
