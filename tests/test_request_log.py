"""The request log: what is recorded, how it aggregates, and how it survives floods and outages."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import RequestLogEntry
from app.request_log import get_request_log
from cors_control.database import create_source_engine

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "https://app.example.com"
EVIL = "https://evil.example.net"
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"

RULE = {
    "path": "/api/*",
    "origins": [ORIGIN],
    "methods": ["GET", "PUT"],
    "allow_headers": ["content-type"],
}


def _flush(app) -> None:
    get_request_log(app).recorder.flush()


def _rows(app, **where) -> list[RequestLogEntry]:
    with app.app_context():
        query = sa.select(RequestLogEntry).order_by(RequestLogEntry.id)
        for name, value in where.items():
            query = query.where(getattr(RequestLogEntry, name) == value)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return list(rows)


def _preflight(client, origin=ORIGIN, method="PUT", headers="content-type", **extra):
    return client.options("/api/orders", headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers, **extra})


def _with_cookie(client):
    client.set_cookie("session", "1")  # the test client sends cookies from its jar only
    return client


@pytest.mark.parametrize(
    ("send", "reason", "detail"),
    [
        (lambda c: c.get("/api/orders", headers={"Origin": EVIL}), "origin-not-allowed", ""),
        (lambda c: _preflight(c, origin=EVIL), "origin-not-allowed", ""),
        (lambda c: _preflight(c, method="DELETE"), "method-not-allowed", "DELETE"),
        (lambda c: _preflight(c, headers="content-type,x-secret"), "header-not-allowed",
         "x-secret"),
        (lambda c: _with_cookie(c).get("/api/orders", headers={"Origin": ORIGIN}),
         "credentials-not-allowed", ""),
        (lambda c: _preflight(c, **{"Access-Control-Request-Private-Network": "true"}),
         "private-network-not-allowed", ""),
    ],
)
def test_each_refusal_produces_a_row_with_its_reason(app, client, policy, send, reason,
                                                     detail):
    policy(RULE)
    send(client)
    _flush(app)
    rows = _rows(app)
    assert [(r.reason, r.detail, r.mode, r.rule_path, r.count) for r in rows] == [
        (reason, detail, "enforce", "/api/*", 1)]


def test_preflight_rows_keep_the_requested_method_and_headers_and_a_sample(app, client,
                                                                          policy):
    policy(RULE)
    _preflight(client, origin=EVIL, method="PUT", headers="content-type,x-trace",
               **{"User-Agent": "Agent/1.0", "Referer": "https://evil.example.net/page"})
    _flush(app)
    (row,) = _rows(app)
    assert row.preflight and row.method == "OPTIONS"
    assert (row.request_method, row.request_headers) == ("PUT", "content-type,x-trace")
    assert (row.user_agent, row.referer) == ("Agent/1.0", "https://evil.example.net/page")
    assert row.origin == EVIL and row.path == "/api/orders"


def test_allowed_requests_and_requests_without_origin_are_not_recorded(app, client, policy):
    policy(RULE)
    client.get("/api/orders", headers={"Origin": ORIGIN})
    _preflight(client)
    client.get("/api/orders")
    _flush(app)
    assert _rows(app) == []


def test_counts_add_up_across_flushes(app, client, policy):
    policy(RULE)
    for _ in range(3):
        client.get("/api/orders", headers={"Origin": EVIL})
    _flush(app)
    for _ in range(4):
        client.get("/api/orders", headers={"Origin": EVIL})
    _flush(app)
    (row,) = _rows(app)
    assert row.count == 7
    assert row.first_seen <= row.last_seen


def test_recorded_rows_carry_their_group_key_and_sum_among_the_most_refused(app, client,
                                                                             policy):
    """The recorder's upsert writes each row's group_key (what the overview sums on), and
    keeps it when it adds to the row."""
    from app.services.overview import top_refused_origins
    from cors_control.database.tables import refusal_group_key

    policy(RULE)
    for flushes in range(2):
        for _ in range(3 + flushes):
            client.get("/api/orders", headers={"Origin": EVIL})
        _preflight(client, method="DELETE")
        _flush(app)
    rows = _rows(app)
    assert {(row.origin, row.reason, row.count, row.group_key) for row in rows} == {
        (EVIL, "origin-not-allowed", 7,
         refusal_group_key(EVIL, "/api/*", "origin-not-allowed", "enforce")),
        (ORIGIN, "method-not-allowed", 2,
         refusal_group_key(ORIGIN, "/api/*", "method-not-allowed", "enforce")),
    }
    with app.app_context():
        top = top_refused_origins(now=datetime.now(UTC))
    assert [(o.origin, o.reason, o.count) for o in top] == [
        (EVIL, "origin-not-allowed", 7), (ORIGIN, "method-not-allowed", 2)]


def test_buckets_roll_over(make_app, policy):
    app = make_app(REQUEST_LOG_BUCKET_SECONDS=1)
    client = app.test_client()
    from app.services.access import Actor
    from app.services.policy import import_policy
    from cors_control import get_control

    with app.app_context():
        import_policy({"rules": [RULE]}, actor=Actor("t", "cli"))
    get_control(app).cache.refresh()
    client.get("/api/orders", headers={"Origin": EVIL})
    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.01)
    client.get("/api/orders", headers={"Origin": EVIL})
    get_request_log(app).recorder.flush()
    rows = _rows(app)
    assert len(rows) == 2
    assert rows[0].bucket_start != rows[1].bucket_start
    assert [r.count for r in rows] == [1, 1]


def test_report_only_rows_are_marked_and_the_request_is_answered_as_without_the_rule(
    app, client, policy
):
    policy({**RULE, "mode": "report-only"})
    response = client.get("/api/orders", headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in response.headers
    _flush(app)
    (row,) = _rows(app, mode="report-only")
    assert (row.rule_path, row.reason, row.origin) == ("/api/*", "origin-not-allowed", EVIL)
    # What was applied is recorded as well: no rule answers this API path.
    assert [(r.reason, r.rule_path) for r in _rows(app, mode="enforce")] == [("no-rule", "")]


def test_switching_a_rule_to_enforce_keeps_its_log(app, client, policy):
    policy({**RULE, "mode": "report-only"})
    client.get("/api/orders", headers={"Origin": EVIL})
    _flush(app)
    policy({**RULE, "mode": "enforce"})
    client.get("/api/orders", headers={"Origin": EVIL})
    _flush(app)
    assert sorted((r.mode, r.rule_path, r.reason) for r in _rows(app)) == [
        ("enforce", "", "no-rule"), ("enforce", "/api/*", "origin-not-allowed"),
        ("report-only", "/api/*", "origin-not-allowed")]


TIGHT = {"path": "/api/orders", "origins": ["https://partner.example.org"], "methods": ["GET"],
         "mode": "report-only"}


@pytest.mark.parametrize(
    ("origin", "method", "expected"),
    [
        (EVIL, "GET", [("enforce", "/api/*", "origin-not-allowed"),
                       ("report-only", "/api/orders", "origin-not-allowed")]),
        (ORIGIN, "GET", [("report-only", "/api/orders", "origin-not-allowed")]),
        ("https://partner.example.org", "GET", [("enforce", "/api/*", "origin-not-allowed")]),
        ("https://partner.example.org", "PUT", [("enforce", "/api/*", "origin-not-allowed"),
                                                ("report-only", "/api/orders",
                                                 "method-not-allowed")]),
    ],
    ids=["both-refuse", "only-the-tried-rule-refuses", "only-the-live-rule-refuses",
         "each-for-its-reason"],
)
@pytest.mark.parametrize("kind", ["actual", "preflight"])
def test_a_report_only_rule_is_recorded_beside_the_rule_that_answers(
    app, client, policy, origin, method, expected, kind
):
    policy(RULE, TIGHT)
    if kind == "preflight":
        response = _preflight(client, origin, method)
        assert response.status_code == (204 if origin == ORIGIN else 403)
    else:
        response = client.open("/api/orders", method=method, headers={"Origin": origin})
        assert response.headers.get("Access-Control-Allow-Origin") == (
            ORIGIN if origin == ORIGIN else None)
    _flush(app)
    rows = _rows(app)
    assert sorted((r.mode, r.rule_path, r.reason) for r in rows) == expected
    assert {r.preflight for r in rows} == {kind == "preflight"}


def test_every_report_only_rule_more_specific_than_the_answering_one_is_recorded(
    app, client, policy
):
    policy(RULE, {**TIGHT, "path": "/api/orders/*"},
           {**TIGHT, "path": "/api/orders/*/lines", "origins": [ORIGIN]})
    response = client.get("/api/orders/7/lines", headers={"Origin": EVIL})
    assert "Access-Control-Allow-Origin" not in response.headers
    _flush(app)
    assert sorted((r.mode, r.rule_path) for r in _rows(app)) == [
        ("enforce", "/api/*"), ("report-only", "/api/orders/*"),
        ("report-only", "/api/orders/*/lines")]


def test_metrics_count_what_was_applied_and_each_report_only_finding_under_its_rule():
    from werkzeug.datastructures import Headers

    from app.request_log.metrics import DecisionCounters
    from cors_control.decision import decide
    from cors_control.snapshot import OriginEntry, RuleSpec, compile_policy

    snapshot = compile_policy(1, [
        RuleSpec("/api/*", origins=(OriginEntry(ORIGIN),)),
        RuleSpec("/api/orders", origins=(OriginEntry(EVIL),), mode="report-only")])
    counters = DecisionCounters()
    for origin in (ORIGIN, EVIL):
        counters.observe(decide(snapshot, "GET", "/api/orders", Headers({"Origin": origin})),
                         None)
    assert counters.snapshot() == {
        ("/api/*", "allowed", ""): 1,
        ("/api/orders", "report-only", "origin-not-allowed"): 1,
        ("/api/*", "refused", "origin-not-allowed"): 1,
    }


def test_unmatched_cors_requests_are_recorded_only_under_api_prefixes(app, client, policy):
    policy({"path": "/api/orders", "origins": [ORIGIN]})
    client.get("/api/unconfigured", headers={"Origin": ORIGIN})
    client.get("/elsewhere", headers={"Origin": ORIGIN})
    _flush(app)
    rows = _rows(app)
    assert [(r.reason, r.rule_path, r.path) for r in rows] == [
        ("no-rule", "", "/api/unconfigured")]


def test_overflow_is_counted_and_stored_when_the_key_bound_is_hit(make_app):
    app = make_app(REQUEST_LOG_MAX_KEYS=5)
    from app.services.access import Actor
    from app.services.policy import import_policy
    from cors_control import get_control

    with app.app_context():
        import_policy({"rules": [RULE]}, actor=Actor("t", "cli"))
    get_control(app).cache.refresh()
    client = app.test_client()
    for index in range(12):
        client.get("/api/orders", headers={"Origin": f"https://x{index}.example.net"})
    recorder = get_request_log(app).recorder
    assert recorder.pending_keys == 5 and recorder.pending_overflow == 7
    recorder.flush()
    rows = _rows(app)
    assert len([r for r in rows if r.reason != "overflow"]) == 5
    (overflow,) = [r for r in rows if r.reason == "overflow"]
    assert overflow.count == 7


def test_a_flush_during_a_database_outage_loses_nothing(app, client, policy, caplog):
    policy(RULE)
    recorder = get_request_log(app).recorder
    good_engine = recorder.sink.engine
    recorder.sink.engine = create_source_engine(UNREACHABLE)
    try:
        with caplog.at_level(logging.ERROR, logger="cors_control"):
            for _ in range(3):
                response = client.get("/api/orders", headers={"Origin": EVIL})
                assert response.status_code == 200  # a request never fails for the log
                assert recorder.flush() == 0
        assert recorder.flush_failures == 3
        assert len([r for r in caplog.records if "flush failed" in r.getMessage()]) == 1
        assert _rows(app) == []
    finally:
        recorder.sink.engine.dispose()
        recorder.sink.engine = good_engine
    recorder.flush()
    (row,) = _rows(app)
    assert row.count == 3


def test_pruning_removes_only_old_rows(app, runner):
    now = datetime.now(UTC)
    with app.app_context():
        for days, origin in ((40, "https://old.example.com"), (1, "https://new.example.com")):
            seen = now - timedelta(days=days)
            db.session.add(RequestLogEntry(
                bucket_start=seen, rule_id=None, rule_path="/api/*", origin=origin,
                reason="origin-not-allowed", detail="", mode="enforce", count=1,
                first_seen=seen, last_seen=seen, path="/api/x", method="GET",
                preflight=False, request_method="", request_headers="", user_agent="",
                referer=""))
        db.session.commit()
    result = runner.invoke(args=["cors", "prune-log"])
    assert result.exit_code == 0 and "deleted 1 " in result.output
    assert [r.origin for r in _rows(app)] == ["https://new.example.com"]


HOSTILE = 'https://x.example"><script>alert(1)</script>\x1b[2J\x0bINFO forged line'


def test_hostile_values_are_stored_as_data_and_escaped_in_log_lines(app, client, policy,
                                                                    caplog):
    policy(RULE)
    with caplog.at_level(logging.INFO, logger="cors_control"):
        client.get("/api/orders", headers={"Origin": HOSTILE, "User-Agent": "a\x1b[31mb"})
    _flush(app)
    (row,) = _rows(app)
    # Stored as data, control characters escaped as in log lines; markup is escaped by pages.
    assert row.origin == HOSTILE.replace("\x1b", "\\x1b").replace("\x0b", "\\x0b")
    assert row.user_agent == "a\\x1b[31mb"
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1
    assert "\x1b" not in lines[0] and "\x0b" not in lines[0]
    assert "\\x1b[2J\\x0bINFO" in lines[0]


def test_long_attacker_values_are_truncated(app, client, policy):
    policy(RULE)
    client.get("/api/orders", headers={"Origin": "https://" + "a" * 5000 + ".example.com"})
    _flush(app)
    (row,) = _rows(app)
    assert len(row.origin) == 300


def test_refusal_log_line_is_rate_limited_per_key(app, client, policy, caplog):
    policy(RULE)
    with caplog.at_level(logging.INFO, logger="cors_control"):
        for _ in range(5):
            client.get("/api/orders", headers={"Origin": EVIL})
        _flush(app)
        for _ in range(5):
            client.get("/api/orders", headers={"Origin": EVIL})
        client.get("/api/orders", headers={"Origin": "https://other.example.net"})
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2
    assert "origin=https://evil.example.net" in lines[0]
    assert "rule=/api/*" in lines[0] and "origin-not-allowed" in lines[0]


def test_cli_log_shows_a_table_and_json_with_filters(app, client, policy, runner):
    policy(RULE)
    client.get("/api/orders", headers={"Origin": EVIL})
    _preflight(client, method="DELETE")
    client.get("/api/orders", headers={"Origin": HOSTILE})
    _flush(app)
    table = runner.invoke(args=["cors", "log", "--since", "1h"])
    assert table.exit_code == 0, table.output
    assert "origin-not-allowed" in table.output and "method-not-allowed (DELETE)" in table.output
    assert "\x1b" not in table.output
    only = runner.invoke(args=["cors", "log", "--reason", "method-not-allowed", "--json"])
    document = json.loads(only.output)
    assert document["total"] == 1
    assert document["entries"][0]["sample"]["request_method"] == "DELETE"
    by_origin = runner.invoke(args=["cors", "log", "--origin", "EVIL.example", "--json"])
    assert [e["origin"] for e in json.loads(by_origin.output)["entries"]] == [EVIL]
    bad = runner.invoke(args=["cors", "log", "--since", "yesterday"])
    assert bad.exit_code == 1 and "since: use a duration" in bad.output


def test_metrics_are_off_by_default(client):
    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_bearer_token(make_app, policy):
    app = make_app(METRICS_ENABLED=True, METRICS_TOKEN="s3cret-token")
    client = app.test_client()
    from app.services.access import Actor
    from app.services.policy import import_policy
    from cors_control import get_control

    with app.app_context():
        import_policy({"rules": [RULE]}, actor=Actor("t", "cli"))
    get_control(app).cache.refresh()
    client.get("/api/orders", headers={"Origin": EVIL})
    client.get("/api/orders", headers={"Origin": ORIGIN})
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token",
                                               "Origin": ORIGIN})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    text = response.get_data(as_text=True)
    assert ('cors_requests_total{decision="refused",reason="origin-not-allowed",'
            'rule="/api/*"} 1.0') in text
    assert 'cors_requests_total{decision="allowed",reason="",rule="/api/*"} 1.0' in text
    assert "cors_policy_version 1.0" in text
    assert "evil" not in text  # no origin label


def test_worker_shutdown_flushes_what_is_pending(database_url, tmp_path):
    """A process that exits normally writes its pending aggregate (the atexit flush)."""
    script = (
        "from app import create_app\n"
        "from app.services.access import Actor\n"
        "from app.services.policy import import_policy\n"
        "from cors_control import get_control\n"
        "app = create_app({'REQUEST_LOG_FLUSH_INTERVAL': 3600})\n"
        "with app.app_context():\n"
        f"    import_policy({{'rules': [{RULE!r}]}}, actor=Actor('t', 'cli'))\n"
        "get_control(app).cache.refresh()\n"
        f"app.test_client().get('/api/orders', headers={{'Origin': {EVIL!r}}})\n"
    )
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "x",
           "INSTANCE_PATH": str(tmp_path / "instance")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT origin, count FROM request_log")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(EVIL, 1)]
