"""The Alembic migrations build the schema from nothing, tear it down, and match the models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.extensions import db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def empty_database_url(database_url, tmp_path):
    """A database of its own, so upgrading and downgrading does not disturb other tests."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    url = sa.engine.make_url(database_url)
    name = f"{url.database}_migrations"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _flask(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "x",
           "INSTANCE_PATH": str(tmp_path / "instance")}
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_builds_the_schema_from_nothing_and_downgrade_removes_it(
        empty_database_url, tmp_path):
    upgraded = _flask(empty_database_url, tmp_path, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert {"rules", "allowed_origins", "policy_state", "users", "audit_entries",
            "rule_drafts"} <= _tables(empty_database_url)
    downgraded = _flask(empty_database_url, tmp_path, "db", "downgrade", "base")
    assert downgraded.returncode == 0, downgraded.stderr
    assert _tables(empty_database_url) <= {"alembic_version"}
    again = _flask(empty_database_url, tmp_path, "db", "upgrade")
    assert again.returncode == 0, again.stderr


def test_models_and_migrations_agree(app):
    """Autogenerate against the migrated test database finds no difference."""
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_migration_seeds_the_policy_version_row(app):
    with app.app_context():
        rows = db.session.execute(sa.text("SELECT id, version FROM policy_state")).all()
    assert [tuple(r) for r in rows] == [(1, 0)]


def test_upgrade_to_autoincrement_keeps_the_rows_and_a_deleted_id_is_never_reused(
        empty_database_url, tmp_path):
    """0007 rebuilds the tables on SQLite (a no-op on PostgreSQL, whose sequences never
    reuse a value): rows and ids survive, and deleting the newest rule frees no id."""
    before = _flask(empty_database_url, tmp_path, "db", "upgrade", "0005")
    assert before.returncode == 0, before.stderr
    engine = sa.create_engine(empty_database_url)
    rule = sa.text(
        "INSERT INTO rules (path, methods, allow_headers, expose_headers, "
        "supports_credentials, allow_private_network, mode, description, created_at, "
        "updated_at, updated_by, version) VALUES (:path, '[]', '[]', '[]', false, false, "
        "'enforce', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '', 1) RETURNING id")
    try:
        with engine.begin() as conn:
            old_id = conn.execute(rule, {"path": "/api/*"}).scalar()
        upgraded = _flask(empty_database_url, tmp_path, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT id, path FROM rules")).all() == [
                (old_id, "/api/*")]
            conn.execute(sa.text("DELETE FROM rules WHERE id = :id"), {"id": old_id})
        with engine.begin() as conn:
            new_id = conn.execute(rule, {"path": "/api/new"}).scalar()
        assert new_id > old_id
    finally:
        engine.dispose()


def test_upgrade_to_namespaces_gives_tenants_none_and_leaves_their_rules_as_they_were(
        empty_database_url, tmp_path):
    """0008: no tenant gets a namespace guessed from its rules, and no rule is switched off
    yet, so that an admin may give tenants their namespaces before 0015 switches off the
    rules still outside them."""
    before = _flask(empty_database_url, tmp_path, "db", "upgrade", "0007")
    assert before.returncode == 0, before.stderr
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            tenant_id = conn.execute(sa.text(
                "INSERT INTO tenants (slug, name, created_at) VALUES ('acme', 'Acme', "
                "CURRENT_TIMESTAMP) RETURNING id")).scalar()
            conn.execute(sa.text(
                "INSERT INTO rules (path, methods, allow_headers, expose_headers, "
                "supports_credentials, allow_private_network, mode, description, created_at, "
                "updated_at, updated_by, version, tenant_id) VALUES ('/api/echo', '[]', '[]', "
                "'[]', false, false, 'enforce', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '', "
                "1, :tenant)"), {"tenant": tenant_id})
        upgraded = _flask(empty_database_url, tmp_path, "db", "upgrade", "0008")
        assert upgraded.returncode == 0, upgraded.stderr
        with engine.begin() as conn:
            paths = conn.execute(sa.text("SELECT paths FROM tenants")).scalar()
            assert (json.loads(paths) if isinstance(paths, str) else paths) == []
            assert conn.execute(sa.text("SELECT path, mode FROM rules")).all() == [
                ("/api/echo", "enforce")]
        downgraded = _flask(empty_database_url, tmp_path, "db", "downgrade", "0007")
        assert downgraded.returncode == 0, downgraded.stderr
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT slug FROM tenants")).all() == [("acme",)]
            columns = {c["name"] for c in sa.inspect(conn).get_columns("tenants")}
            assert "paths" not in columns
    finally:
        engine.dispose()


def _insert_rule(conn, path: str, tenant_id: int | None, mode: str = "enforce") -> int:
    return conn.execute(sa.text(
        "INSERT INTO rules (path, methods, allow_headers, expose_headers, supports_credentials, "
        "allow_private_network, mode, description, created_at, updated_at, updated_by, "
        "version, tenant_id, tenant_source, tenant_key, unknown_tenant) VALUES (:path, "
        "'[\"GET\"]', '[]', '[]', false, false, :mode, '', CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP, 'someone', 1, :tenant, 'none', '', 'refuse') RETURNING id"),
        {"path": path, "tenant": tenant_id, "mode": mode}).scalar()


def test_upgrade_switches_off_tenant_rules_outside_their_namespaces_and_audits_it(
        empty_database_url, tmp_path):
    """0015: a tenant rule outside its tenant's namespaces (it could govern platform routes)
    is switched off in one policy version, with an audit entry holding the rule before and
    after; rules inside, platform rules and rules already off are left alone."""
    assert _flask(empty_database_url, tmp_path, "db", "upgrade", "0014").returncode == 0
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            acme = conn.execute(sa.text(
                "INSERT INTO tenants (slug, name, created_at, paths) VALUES ('acme', 'Acme', "
                "CURRENT_TIMESTAMP, '[\"/api/t/acme/*\"]') RETURNING id")).scalar()
            bare = conn.execute(sa.text(
                "INSERT INTO tenants (slug, name, created_at, paths) VALUES ('bare', 'Bare', "
                "CURRENT_TIMESTAMP, '[]') RETURNING id")).scalar()
            outside = _insert_rule(conn, "/api/echo", acme)
            inside = _insert_rule(conn, "/api/t/acme/orders", acme)
            wider = _insert_rule(conn, "/api/t/*", acme, mode="report-only")
            no_namespace = _insert_rule(conn, "/api/t/bare/*", bare)
            already_off = _insert_rule(conn, "/api/legacy", acme, mode="off")
            platform = _insert_rule(conn, "/api/*", None)
            conn.execute(sa.text(
                "INSERT INTO allowed_origins (rule_id, value, kind, note, added_at, "
                "added_by) VALUES (:id, 'https://acme.example', 'exact', 'shop', "
                "CURRENT_TIMESTAMP, 'someone')"), {"id": outside})
            version_before = conn.execute(sa.text(
                "SELECT version FROM policy_state")).scalar()
        upgraded = _flask(empty_database_url, tmp_path, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        with engine.begin() as conn:
            modes = dict(conn.execute(sa.text("SELECT id, mode FROM rules")).all())
            assert modes == {outside: "off", inside: "enforce", wider: "off",
                             no_namespace: "off", already_off: "off", platform: "enforce"}
            assert conn.execute(sa.text("SELECT version FROM policy_state")).scalar() \
                == version_before + 1
            entries = conn.execute(sa.text(
                "SELECT rule_id, actor, action, before, after, policy_version, tenant_id "
                "FROM audit_entries ORDER BY rule_id")).all()
        assert [e.rule_id for e in entries] == [outside, wider, no_namespace]
        first = entries[0]
        before = json.loads(first.before) if isinstance(first.before, str) else first.before
        after = json.loads(first.after) if isinstance(first.after, str) else first.after
        assert (first.actor, first.action, first.tenant_id) == ("upgrade 0015", "rule.update",
                                                                acme)
        assert first.policy_version == version_before + 1
        assert before["mode"] == "enforce" and after["mode"] == "off"
        assert before["origins"] == [{"value": "https://acme.example", "note": "shop"}]
        assert {k: v for k, v in before.items() if k != "mode"} == \
            {k: v for k, v in after.items() if k != "mode"}
        assert before["tenant"] == "acme" and before["methods"] == ["GET"]
    finally:
        engine.dispose()


def test_upgrade_to_the_change_log_starts_it_empty_and_processes_load_in_full_once(
        empty_database_url, tmp_path):
    """0017: the change log starts empty, so a process holding a version from before it
    finds a gap and loads in full; the next change is the first it can load alone."""
    from cors_control.database.changes_feed import load_delta

    assert _flask(empty_database_url, tmp_path, "db", "upgrade", "0015").returncode == 0
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE policy_state SET version = 7"))
        upgraded = _flask(empty_database_url, tmp_path, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM policy_changes")).scalar() == 0
            assert load_delta(conn, 6) is None  # a gap: load in full
            assert load_delta(conn, 7).version == 7  # nothing to do
            conn.execute(sa.text("UPDATE policy_state SET version = 8"))
            conn.execute(sa.text(
                "INSERT INTO policy_changes (version, kind, recorded_at) "
                "VALUES (8, 'none', CURRENT_TIMESTAMP)"))
        with engine.connect() as conn:
            delta = load_delta(conn, 7)
            assert delta is not None and delta.version == 8 and not delta.rules
            assert load_delta(conn, 6) is None
        with engine.begin() as conn:
            with pytest.raises(sa.exc.IntegrityError):  # the kinds are the log's own
                conn.execute(sa.text(
                    "INSERT INTO policy_changes (version, kind, recorded_at) "
                    "VALUES (9, 'everything', CURRENT_TIMESTAMP)"))
        downgraded = _flask(empty_database_url, tmp_path, "db", "downgrade", "0015")
        assert downgraded.returncode == 0, downgraded.stderr
        assert "policy_changes" not in _tables(empty_database_url)
    finally:
        engine.dispose()


def test_upgrade_counts_each_rules_origins(empty_database_url, tmp_path):
    """0019: every rule stores the number of its origins, counted from the rows there."""
    assert _flask(empty_database_url, tmp_path, "db", "upgrade", "0018").returncode == 0
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.begin() as conn:
            busy = _insert_rule(conn, "/api/busy/*", None)
            idle = _insert_rule(conn, "/api/idle/*", None)
            for value in ("https://a.example", "https://b.example", "https://c.example"):
                conn.execute(sa.text(
                    "INSERT INTO allowed_origins (rule_id, value, kind, note, added_at, "
                    "added_by) VALUES (:id, :value, 'exact', '', CURRENT_TIMESTAMP, 'someone')"),
                    {"id": busy, "value": value})
        upgraded = _flask(empty_database_url, tmp_path, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        with engine.begin() as conn:
            counts = dict(conn.execute(sa.text("SELECT id, origin_count FROM rules")).all())
        assert counts == {busy: 3, idle: 0}
    finally:
        engine.dispose()


def test_upgrade_gives_the_stored_request_log_rows_their_group_key(empty_database_url,
                                                                   tmp_path):
    """0021: rows stored before get refusal_group_key of their origin, rule, reason and mode,
    as the recorder writes it from then on (none for rows never listed among the most
    refused origins); the downgrade drops the column."""
    from cors_control.database.tables import refusal_group_key

    assert _flask(empty_database_url, tmp_path, "db", "upgrade", "0020").returncode == 0
    engine = sa.create_engine(empty_database_url)
    stored = [("https://a.example", "/api/*", "origin-not-allowed", "", "enforce"),
              ("https://a.example", "/api/*", "method-not-allowed", "PUT", "report-only"),
              ("https://b.example", "", "no-rule", "", "enforce"),
              ("", "/api/*", "overflow", "", "enforce"),  # never listed: no key
              ("https://c.example", "/api/*", "method-not-allowed", "PUT", "draft")]
    try:
        with engine.begin() as conn:
            for origin, rule_path, reason, detail, mode in stored:
                conn.execute(sa.text(
                    "INSERT INTO request_log (bucket_start, rule_path, tenant, origin, reason, "
                    "detail, mode, count, first_seen, last_seen, path, method, preflight, "
                    "request_method, request_headers, user_agent, referer) VALUES "
                    "(CURRENT_TIMESTAMP, :rule_path, '', :origin, :reason, :detail, :mode, 3, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '/api/x', 'GET', false, '', '', "
                    "'', '')"), {"origin": origin, "rule_path": rule_path, "reason": reason,
                                 "detail": detail, "mode": mode})
        upgraded = _flask(empty_database_url, tmp_path, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        with engine.connect() as conn:
            keys = conn.execute(sa.text(
                "SELECT origin, rule_path, reason, mode, group_key FROM request_log")).all()
        assert sorted(keys) == sorted(
            (origin, rule_path, reason, mode, refusal_group_key(origin, rule_path, reason, mode))
            for origin, rule_path, reason, _, mode in stored)
        assert sum(key is None for *_, key in keys) == 2
        downgraded = _flask(empty_database_url, tmp_path, "db", "downgrade", "0020")
        assert downgraded.returncode == 0, downgraded.stderr
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM request_log")).scalar() == 5
            assert "group_key" not in {
                column["name"] for column in sa.inspect(conn).get_columns("request_log")}
    finally:
        engine.dispose()
