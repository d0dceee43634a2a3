"""Hostile input, in one table: every case of the hardening review (issue 10) that a request
can carry, with the answer it gets. None is a 500; each refusal says what is wrong.

The table covers the API, the dashboard and the demo API governed by the engine, on SQLite
and on PostgreSQL (``TEST_DATABASE_URL``). Cases of the same review that other test modules
own: sessions and sign-in throttling (test_auth.py), the request log's flushes under NUL
bytes, deadlocks and shutdown (test_request_log.py), the dashboard during a database outage,
and ``/healthz`` and ``/metrics``.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.models import Rule
from app.request_log import get_request_log
from app.services.policy import Actor, create_rule, delete_rule
from app.services.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent
ADMIN = Actor("root", "cli")
API = "/admin/api/v1"
HUGE = "99999999999999999999"  # past 64 bits
MB = 1024 * 1024
JSON = {"Content-Type": "application/json"}
DEEP = "[" * 100_000 + "]" * 100_000
RULE = {"path": "/api/*", "origins": ["https://app.example.com"]}


@dataclass(frozen=True)
class Case:
    """One hostile request: who sends it, what, and what the answer must hold."""

    who: str  # "api" (an admin token), "dashboard" (a signed-in admin) or "anyone"
    method: str
    url: str
    status: int
    says: tuple[str, ...] = ()
    body: Any = None  # bytes or str (sent as is), dict (a form), or None
    headers: dict[str, str] = field(default_factory=dict)


CASES = {
    # -- request bodies: 1 MB, imports 20 MB ---------------------------------------------
    "api body over 1 MB": Case(
        "api", "POST", "/rules", 413, ("larger than 1 MB (1,048,576 bytes)",),
        body=b'{"path": "/api/*", "description": "' + b"x" * MB + b'"}', headers=JSON),
    "api import over 20 MB": Case(
        "api", "POST", "/import?dry_run=1", 413, ("larger than 20 MB", "IMPORT_MAX_BYTES"),
        body=b'{"rules": []}' + b" " * (20 * MB), headers=JSON),
    "api import of 2 MB is read": Case(
        "api", "POST", "/import?dry_run=1", 200, ('"dry_run":true',),
        body=b'{"rules": []}' + b" " * (2 * MB), headers=JSON),
    "dashboard form over 1 MB": Case(
        "dashboard", "POST", "/admin/rules", 413, ("at most 1 MB", "nothing was saved"),
        body={"path": "/api/*", "description": "x" * MB}),
    "dashboard form field of 600 KB is read and validated": Case(
        "dashboard", "POST", "/admin/rules", 422, ("description",),
        body={"path": "/api/long/*", "description": "x" * 600_000}),
    "sign-in form over 1 MB": Case(
        "anyone", "POST", "/admin/login", 413, ("at most 1 MB",),
        body={"email": "a@example.com", "password": "x" * MB}),
    # -- JSON nested deeper than anything the API reads ----------------------------------
    "api JSON 100,000 deep": Case(
        "api", "POST", "/rules", 400, ("more than 32 deep",), body=DEEP, headers=JSON),
    "api import 100,000 deep": Case(
        "api", "POST", "/import", 400, ("more than 32 deep",),
        body='{"rules": ' + DEEP + "}", headers=JSON),
    "api JSON 33 deep": Case(
        "api", "POST", "/check", 400, ("more than 32 deep",),
        body="[" * 33 + "]" * 33, headers=JSON),
    "api brackets inside strings do not count": Case(
        "api", "POST", "/rules", 422, ("path",),
        body='{"description": "' + "[" * 100 + '"}', headers=JSON),
    # -- durations -----------------------------------------------------------------------
    "api log since 99999999d": Case(
        "api", "GET", "/log?since=99999999d", 422, ("reach back at most 3650d",)),
    "api log since past 64 bits": Case(
        "api", "GET", f"/log?since={HUGE}w", 422, ("reach back at most 3650d",)),
    "dashboard log since 99999999d": Case(
        "dashboard", "GET", "/admin/log?since=99999999d", 200, ("reach back at most 3650d",)),
    "dashboard csv since 99999999d": Case(
        "dashboard", "GET", "/admin/log.csv?since=99999999d", 400, ("reach back at most",)),
    # -- page numbers --------------------------------------------------------------------
    "api rules page past 64 bits": Case(
        "api", "GET", f"/rules?page={HUGE}", 422, ("page must be a whole number from 1",)),
    "api log page past 64 bits": Case(
        "api", "GET", f"/log?page={HUGE}", 422, ("page must be a whole number from 1",)),
    "api audit page past 64 bits": Case(
        "api", "GET", f"/audit?page={HUGE}", 422, ("page must be a whole number from 1",)),
    "dashboard rules page past 64 bits": Case(
        "dashboard", "GET", f"/admin/rules?page={HUGE}", 400, ("page must be a whole number",)),
    "dashboard log page past 64 bits": Case(
        "dashboard", "GET", f"/admin/log?page={HUGE}", 400, ("page must be a whole number",)),
    "dashboard audit page past 64 bits": Case(
        "dashboard", "GET", f"/admin/audit?page={HUGE}", 400, ("page must be a whole number",)),
    "dashboard origins page past 64 bits": Case(
        "dashboard", "GET", f"/admin/rules/1?opage={HUGE}", 400, ("opage must be",)),
    # -- ids -----------------------------------------------------------------------------
    "api rule id past 64 bits": Case(
        "api", "GET", f"/rules/{HUGE}", 404, (f"there is no rule with id {HUGE}",)),
    "api origin of a rule id past 64 bits": Case(
        "api", "PUT", f"/rules/{HUGE}/origins/{quote('https://a.example.com', safe='')}",
        404, ("there is no rule with id",)),
    "api rule id past 32 bits": Case(
        "api", "DELETE", f"/rules/{2**31}", 404, ("there is no rule with id",)),
    "dashboard rule id past 64 bits": Case(
        "dashboard", "GET", f"/admin/rules/{HUGE}", 404, (f"there is no rule with id {HUGE}",)),
    "dashboard rule delete past 64 bits": Case(
        "dashboard", "POST", f"/admin/rules/{HUGE}/delete", 404, ("there is no rule",),
        body={}),
    "dashboard audit restore past 64 bits": Case(
        "dashboard", "POST", f"/admin/audit/{HUGE}/restore", 404, ("there is no entry",),
        body={}),
    "dashboard log allow past 64 bits": Case(
        "dashboard", "POST", f"/admin/log/{HUGE}/allow", 404, ("there is no entry",),
        body={}),
    "dashboard user disable past 64 bits": Case(
        "dashboard", "POST", f"/admin/users/{HUGE}/disable", 404, ("there is no user",),
        body={}),
    "dashboard token revoke past 64 bits": Case(
        "dashboard", "POST", f"/admin/tokens/{HUGE}/revoke", 404, ("there is no token",),
        body={}),
    "dashboard log filter rule id past 64 bits": Case(
        "dashboard", "GET", f"/admin/log?rule={HUGE}", 200, ("choose a rule from the list",)),
    "dashboard simulator fix with a host of 5,000 characters": Case(
        "dashboard", "POST", "/admin/simulator/fix", 200,
        ("Nothing was changed: the question is not valid.",
         "a host is a name such as acme.api.example.com"),
        body={"origin": "https://a.example.com", "method": "GET", "path": "/api/x",
              "host": "a" * 5000}, headers={"HX-Request": "true"}),
    "dashboard max_age of 5,000 digits": Case(
        "dashboard", "POST", "/admin/rules", 422, ("max_age must be a whole number",),
        body={"path": "/api/digits/*", "max_age": "9" * 5000}),
    "api expiry past the last representable day": Case(
        "api", "PUT", f"/rules/RULE/origins/{quote('https://a.example.com', safe='')}", 422,
        ("between the years 1 and 9999",),
        body='{"expires_at": "9999-12-31T23:59:59-12:00"}', headers=JSON),
    "api expiry before the first representable day": Case(
        "api", "POST", "/rules", 422, ("between the years 1 and 9999",),
        body='{"path": "/api/early/*", "origins": [{"value": "https://a.example.com", '
             '"expires_at": "0001-01-01T00:00:00+14:00"}]}', headers=JSON),
    # -- the sign-in page's next ---------------------------------------------------------
    "next with CR/LF, signed in": Case(
        "dashboard", "GET", "/admin/login?next=/admin/rules%0d%0aSet-Cookie:%20x=1", 302,
        ("/admin/",)),
    "next with NUL, signed in": Case(
        "dashboard", "GET", "/admin/login?next=/admin/%00", 302, ("/admin/",)),
    "next with CR/LF, signing in": Case(
        "anyone", "GET", "/admin/login?next=/admin/rules%0d%0aX:1", 200, ("Sign in",)),
    # -- the engine's side: requests from anyone -----------------------------------------
    "NUL in Origin": Case(
        "anyone", "GET", "/api/echo", 200, (), headers={"Origin": "https://a\x00.example"}),
    "CR/LF-free but control-laden Origin": Case(
        "anyone", "OPTIONS", "/api/echo", 403, (),
        headers={"Origin": "https://a\x01\x7f.example", "Access-Control-Request-Method": "PUT"}),
    # -- origins and paths that cannot surprise ------------------------------------------
    "api wildcard under co.uk": Case(
        "api", "PUT", f"/rules/RULE/origins/{quote('https://*.co.uk', safe='')}", 422,
        ("public suffix co.uk", "https://*.example.co.uk")),
    "api wildcard under github.io in a new rule": Case(
        "api", "POST", "/rules", 422, ("public suffix github.io",),
        body='{"path": "/api/pages/*", "supports_credentials": true, '
             '"origins": ["https://*.github.io"]}', headers=JSON),
    "api wildcard under a public suffix in an import": Case(
        "api", "POST", "/import?dry_run=1", 422, ("rules[0].origins[0]", "public suffix"),
        body='{"rules": [{"path": "/api/*", "origins": ["https://*.com.au"]}]}',
        headers=JSON),
    "dashboard wildcard under co.uk": Case(
        "dashboard", "POST", "/admin/rules/RULE/origins", 422, ("public suffix co.uk",),
        body={"value": "https://*.co.uk"}),
    "api path with an empty segment": Case(
        "api", "POST", "/rules", 422, ("empty segment (//)", "use /api/x"),
        body='{"path": "/api//x"}', headers=JSON),
    "api path with a .. segment": Case(
        "api", "POST", "/rules", 422, ("segment ..",), body='{"path": "/api/../admin"}',
        headers=JSON),
    "api path with a . segment": Case(
        "api", "POST", "/rules", 422, ("segment .",), body='{"path": "/api/./x"}',
        headers=JSON),
    "api path with a %-escape": Case(
        "api", "POST", "/rules", 422, ("%-escape",), body='{"path": "/api/a%2Fb"}',
        headers=JSON),
    "api path with a control character": Case(
        "api", "POST", "/rules", 422, ("control characters",),
        body='{"path": "/api/\\u0007"}', headers=JSON),
    "dashboard path with a .. segment": Case(
        "dashboard", "POST", "/admin/rules", 422, ("segment ..",),
        body={"path": "/api/../x"}),
    # -- emails --------------------------------------------------------------------------
    "dashboard email without a domain": Case(
        "dashboard", "POST", "/admin/users", 422, ("enter an email address",),
        body={"email": "ops@localhost", "password": "a-long-new-password", "role": "viewer"}),
    "dashboard email with a newline": Case(
        "dashboard", "POST", "/admin/users", 422, ("enter an email address",),
        body={"email": "ops@example.com\nBcc: x@example.com", "password": "a-long-new-pw",
              "role": "viewer"}),
}


@pytest.fixture
def senders(app, policy, sign_in):
    """A client per kind of sender, and the id of a rule to aim at."""
    policy(RULE)
    with app.app_context():
        secret = create_token("hostile", "admin", actor=ADMIN).secret
        rule_id = db.session.scalar(sa.select(Rule.id).where(Rule.path == "/api/*"))
    return {"api": (app.test_client(), {"Authorization": f"Bearer {secret}"}),
            "dashboard": (sign_in("admin"), {}),
            "anyone": (app.test_client(), {})}, rule_id


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_hostile_input_is_answered_with_a_message_never_a_500(senders, case: Case):
    clients, rule_id = senders
    client, auth = clients[case.who]
    url = case.url.replace("RULE", str(rule_id)).replace("/rules/1?", f"/rules/{rule_id}?")
    if case.who == "api":
        url = API + url
    headers = {**auth, **case.headers}
    body = case.body
    if isinstance(body, dict) and case.who == "dashboard":
        body = {**body, "csrf_token": client.csrf}
    response = client.open(url, method=case.method, data=body, headers=headers)
    text = response.get_data(as_text=True)
    assert response.status_code == case.status, text[:500]
    where = response.headers.get("Location", "") if case.status == 302 else text
    for fragment in case.says:
        assert fragment in where, where[:500]
    if case.who == "api" and case.status >= 400:
        assert response.mimetype == "application/problem+json"


def test_a_hostile_origin_is_shown_escaped_in_the_log_and_neutralised_in_the_csv(
        app, client, policy, sign_in):
    policy(RULE)
    hostile = '"><script>alert(1)</script>'
    # Past the test client's header checks, as a raw HTTP request could send it.
    client.get("/api/orders", headers={"Origin": hostile},
               environ_overrides={"HTTP_USER_AGENT": "=cmd\r\nInjected: 1\x01"})
    get_request_log(app).recorder.flush()
    viewer = sign_in("viewer")
    page = viewer.get("/admin/log").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    export = viewer.get("/admin/log.csv").get_data(as_text=True)
    (row,) = csv.DictReader(io.StringIO(export))
    assert row["origin"] == hostile
    agent = row["sample.user_agent"]
    assert agent.startswith("'=cmd") and "Injected" in agent
    assert not any(ch in agent for ch in "\r\n\x01")


# -- an import reads and validates before it writes -----------------------------------------


@pytest.fixture
def write_lock_held(make_app, database_url):
    """An app whose database waits at most a second for a lock, and another connection that
    holds the policy's write lock (the policy_state row) until the test ends."""
    is_sqlite = database_url.startswith("sqlite")
    options = {"connect_args": {"timeout": 1} if is_sqlite
               else {"options": "-c lock_timeout=1000"}}
    app = make_app(SQLALCHEMY_ENGINE_OPTIONS=options)
    with app.app_context():
        secret = create_token("importer", "editor", actor=ADMIN).secret
    auth = {"Authorization": f"Bearer {secret}"}
    # A token's first use writes its last-use time (then at most once a minute): done here,
    # so the requests under the lock write nothing but what they are about.
    assert app.test_client().get(f"{API}/tokens/self", headers=auth).status_code == 200
    engine = sa.create_engine(database_url)
    connection = engine.connect()
    transaction = connection.begin()
    connection.execute(sa.text("UPDATE policy_state SET version = version"))
    yield app, auth
    transaction.rollback()
    connection.close()
    engine.dispose()


def test_a_dry_run_never_takes_the_write_lock(write_lock_held):
    app, auth = write_lock_held
    response = app.test_client().post(f"{API}/import?dry_run=1", json={"rules": [RULE]},
                                      headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["added"] == ["/api/*"]


def test_an_invalid_import_is_refused_before_the_write_transaction(write_lock_held):
    app, auth = write_lock_held
    response = app.test_client().post(f"{API}/import",
                                      json={"rules": [{"path": "/api//x"}]}, headers=auth)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert "empty segment" in response.get_json()["errors"][0]["message"]


def test_a_deleted_rules_id_is_never_given_to_a_new_rule(app):
    with app.app_context():
        create_rule({"path": "/api/a/*"}, actor=ADMIN)
        newest = create_rule({"path": "/api/b/*"}, actor=ADMIN).id
        delete_rule(newest, actor=ADMIN)
        assert create_rule({"path": "/api/c/*"}, actor=ADMIN).id > newest


# -- private files ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_instance_folder_key_and_sqlite_file_are_the_owners_alone(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    monkeypatch.setenv("INSTANCE_PATH", str(instance))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app({"DEMO_POLICY": False})
    try:
        assert _mode(instance) == 0o700
        assert _mode(instance / "secret-key") == 0o600
        assert _mode(instance / "cors-control.db") == 0o600
        assert app.config["SECRET_KEY"] == (instance / "secret-key").read_text()
    finally:
        app.extensions["request_log"].close(flush=False)
        app.extensions["cors_control"].cache.stop()


def test_files_made_by_an_earlier_version_are_tightened(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    (instance / "secret-key").write_text("kept")
    (instance / "secret-key").chmod(0o644)
    database = tmp_path / "shared.db"
    database.write_bytes(b"")
    database.chmod(0o644)
    monkeypatch.setenv("INSTANCE_PATH", str(instance))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app({"DEMO_POLICY": False, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"})
    try:
        assert app.config["SECRET_KEY"] == "kept"
        assert (_mode(instance), _mode(instance / "secret-key"), _mode(database)) == (
            0o700, 0o600, 0o600)
    finally:
        app.extensions["request_log"].close(flush=False)
        app.extensions["cors_control"].cache.stop()


KEY_RACE = """
import sys, threading
from pathlib import Path
from app.instance import local_secret_key
start = threading.Event()
keys = []
def take():
    start.wait()
    keys.append(local_secret_key(Path(sys.argv[1])))
threads = [threading.Thread(target=take) for _ in range(8)]
for t in threads: t.start()
start.set()
for t in threads: t.join()
print("\\n".join(keys))
"""


@pytest.mark.slow
def test_processes_starting_together_share_one_secret_key(tmp_path):
    """Two processes of eight threads each create the key at once: one writes it, every
    other caller reads that same key, never an empty or half-written one."""
    for attempt in range(5):
        folder = tmp_path / f"race-{attempt}"
        folder.mkdir()
        runs = [subprocess.Popen([sys.executable, "-c", KEY_RACE, str(folder)], cwd=ROOT,
                                 stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
                for _ in range(2)]
        keys = {line for run in runs for line in run.communicate(timeout=60)[0].split()}
        assert keys == {(folder / "secret-key").read_text()}
        assert len(keys.pop()) == 64


def test_concurrent_callers_in_one_process_share_one_secret_key(tmp_path):
    from app.instance import local_secret_key

    keys: list[str] = []
    start = threading.Event()

    def take() -> None:
        start.wait()
        keys.append(local_secret_key(tmp_path))

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join()
    assert set(keys) == {(tmp_path / "secret-key").read_text()}
