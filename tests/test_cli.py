"""The command line: import, export, check, users, bootstrap."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, User
from app.services.changes import policy_version
from app.services.policy_read import export_policy

POLICY = {
    "rules": [
        {"path": "/api/*", "origins": ["https://app.example.com", "https://*.example.org"],
         "methods": ["GET", "PUT"], "allow_headers": ["content-type"], "max_age": 0},
        {"path": "/api/public/*", "origins": ["*"], "methods": ["GET"]},
    ]
}


def _write(tmp_path, document) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return str(path)


def test_import_then_export_round_trips(runner, tmp_path, app):
    result = runner.invoke(args=["cors", "import", _write(tmp_path, POLICY)])
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output
    exported = runner.invoke(args=["cors", "export"])
    document = json.loads(exported.output)
    assert [r["path"] for r in document["rules"]] == ["/api/*", "/api/public/*"]
    assert document["rules"][0]["max_age"] == 0
    again = runner.invoke(args=["cors", "import", _write(tmp_path, document)])
    assert "0 added, 0 changed, 0 removed, 2 unchanged" in again.output
    assert runner.invoke(args=["cors", "export"]).output == exported.output


def test_export_is_sorted_and_stable(runner, tmp_path):
    runner.invoke(args=["cors", "import", _write(tmp_path, POLICY)])
    first = runner.invoke(args=["cors", "export"]).output
    assert first == runner.invoke(args=["cors", "export"]).output
    assert first.index('"allow_headers"') < first.index('"path"')


def test_invalid_import_writes_nothing_and_names_entries(runner, tmp_path, app):
    bad = {"rules": [{"path": "/api/*", "origins": ["https://app.example.com/"]},
                     {"path": "nope"}]}
    result = runner.invoke(args=["cors", "import", _write(tmp_path, bad)])
    assert result.exit_code == 1
    assert "Nothing was written" in result.output
    assert "rules[0].origins[0]: an origin has no path; use https://app.example.com" in \
        result.output
    assert "rules[1].path" in result.output
    with app.app_context():
        assert policy_version() == 0


def test_import_of_malformed_json_says_so(runner, tmp_path):
    result = runner.invoke(args=["cors", "import", _write(tmp_path, "{not json")])
    assert result.exit_code == 1
    assert "not valid JSON" in result.output


def test_dry_run_shows_the_difference_without_writing(runner, tmp_path, app):
    runner.invoke(args=["cors", "import", _write(tmp_path, POLICY)])
    changed = {"rules": [{**POLICY["rules"][0], "max_age": 60}, {"path": "/api/new"}]}
    result = runner.invoke(
        args=["cors", "import", "--replace", "--dry-run", _write(tmp_path, changed)])
    assert result.exit_code == 0
    assert "+ /api/new" in result.output
    assert "- /api/public/*" in result.output
    assert "~ /api/* (max_age)" in result.output
    assert "would be written" in result.output
    with app.app_context():
        assert [r["path"] for r in export_policy()["rules"]] == ["/api/*", "/api/public/*"]


def test_check_prints_decision_rule_reason_and_headers(runner, tmp_path):
    runner.invoke(args=["cors", "import", _write(tmp_path, POLICY)])
    allowed = runner.invoke(args=["cors", "check", "https://a.b.example.org", "/api/orders",
                                  "--method", "PUT", "--header", "Content-Type"])
    assert allowed.exit_code == 0, allowed.output
    assert "ALLOWED: preflight PUT /api/orders" in allowed.output
    assert "rule:    /api/*" in allowed.output
    assert "Access-Control-Allow-Origin: https://a.b.example.org" in allowed.output
    assert "Access-Control-Max-Age: 0" in allowed.output

    refused = runner.invoke(args=["cors", "check", "https://example.org.evil.net",
                                  "/api/orders"])
    assert refused.exit_code == 1
    assert "REFUSED" in refused.output and "origin-not-allowed" in refused.output

    header = runner.invoke(args=["cors", "check", "https://app.example.com", "/api/orders",
                                 "-m", "PUT", "-H", "X-Secret"])
    assert header.exit_code == 1
    assert "header-not-allowed" in header.output and "x-secret" in header.output


def test_check_lists_every_failing_check_and_exits_1(runner, tmp_path):
    runner.invoke(args=["cors", "import", _write(tmp_path, POLICY)])
    result = runner.invoke(args=["cors", "check", "https://evil.example", "/api/orders",
                                 "-m", "PROPFIND", "-H", "X-One", "-H", "X-Two",
                                 "--credentials", "--private-network"])
    assert result.exit_code == 1, result.output
    fails = [line for line in result.output.splitlines() if line.startswith("fails:")]
    assert [line.split()[1] for line in fails] == [
        "origin-not-allowed", "method-not-allowed", "header-not-allowed",
        "header-not-allowed", "credentials-not-allowed", "private-network-not-allowed"]
    assert "x-one" in fails[2] and "x-two" in fails[3]
    assert "no fix:  it also fails" in result.output


@pytest.mark.parametrize("args", [
    ["cors", "check", "https://a.example"],  # PATH missing
    ["cors", "check", "https://a.example", "api/x"],  # not a path
    ["cors", "check", "https://a.example", "/api/x", "--request-header", "X-Tenant"],
    ["cors", "check", "https://a.example", "/api/x", "--request-header", "Origin=x"],
    ["cors", "check", "https://a.example", "/api/x", "--host", "a b"],
])
def test_check_answers_a_usage_error_with_exit_2(runner, tmp_path, args):
    runner.invoke(args=["cors", "import", _write(tmp_path, POLICY)])
    result = runner.invoke(args=args)
    assert result.exit_code == 2, result.output


def test_check_reads_the_tenant_from_a_request_header_the_host_and_the_path(
        runner, tmp_path):
    shop = "https://shop.example.com"
    document = {
        "tenants": [{"slug": "acme", "name": "Acme"}],
        "rules": [
            {"path": "/api/echo", "origins": [{"value": shop, "tenant": "acme"}],
             "tenant_selector": {"source": "header", "key": "X-Tenant"}},
            {"path": "/api/public/*", "origins": [{"value": shop, "tenant": "acme"}],
             "tenant_selector": {"source": "subdomain", "key": "api.example.com"}},
            {"path": "/api/t/*", "origins": [{"value": shop, "tenant": "acme"}],
             "tenant_selector": {"source": "view-arg", "key": "tenant"}},
        ],
    }
    assert runner.invoke(args=["cors", "import", _write(tmp_path, document)]).exit_code == 0
    for args in (["/api/echo", "--request-header", "X-Tenant=acme", "--no-preflight"],
                 ["/api/public/status", "--host", "acme.api.example.com"],
                 ["/api/t/acme/orders"]):
        result = runner.invoke(args=["cors", "check", shop, *args])
        assert result.exit_code == 0, result.output
        assert "tenant:  acme" in result.output
        assert f"Access-Control-Allow-Origin: {shop}" in result.output
    nameless = runner.invoke(args=["cors", "check", shop, "/api/public/status"])
    assert nameless.exit_code == 1
    assert "unknown-tenant" in nameless.output


def test_check_answers_as_the_engine_does_and_lists_report_only_findings(runner, tmp_path):
    tried = {"path": "/api/orders", "origins": ["https://new.example.com"],
             "mode": "report-only"}
    runner.invoke(args=["cors", "import", _write(tmp_path, {"rules": [
        *POLICY["rules"], tried]})])
    result = runner.invoke(args=["cors", "check", "https://app.example.com", "/api/orders"])
    assert result.exit_code == 0, result.output  # /api/* answers, the tried rule only reports
    assert "ALLOWED: request GET /api/orders" in result.output
    assert "rule:    /api/*" in result.output
    assert "report-only: /api/orders would refuse: origin-not-allowed" in result.output


def test_check_escapes_control_characters_in_the_origin(runner, tmp_path):
    runner.invoke(args=["cors", "import", _write(tmp_path, POLICY)])
    result = runner.invoke(args=["cors", "check", "https://x.example\x1b[31m", "/api/orders"])
    assert "\x1b" not in result.output


def test_users_create_reads_the_password_from_stdin(runner, app):
    result = runner.invoke(args=["users", "create", "Ops@Example.com", "--role", "admin"],
                           input="a-long-password\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalars(sa.select(User)).one()
        assert (user.email, user.role) == ("ops@example.com", "admin")
        assert user.check_password("a-long-password")
        assert user.password_hash.startswith("scrypt:")


def test_users_create_refuses_a_short_password(runner, app):
    result = runner.invoke(args=["users", "create", "ops@example.com"], input="short\n")
    assert result.exit_code == 1
    assert "password: use at least 10 characters" in result.output


def test_users_create_makes_an_account_of_a_tenant_with_a_tenant_role(runner, app):
    assert runner.invoke(args=["tenants", "create", "acme"]).exit_code == 0
    refused = runner.invoke(args=["users", "create", "ed@acme.example", "--role",
                                  "tenant-editor"], input="a-long-password\n")
    assert refused.exit_code == 1
    assert "tenant: a tenant-editor belongs to one tenant; choose it" in refused.output
    result = runner.invoke(args=["users", "create", "ed@acme.example", "--role",
                                 "tenant-editor", "--tenant", "acme"],
                           input="a-long-password\n")
    assert result.exit_code == 0, result.output
    assert "created tenant-editor ed@acme.example of tenant acme" in result.output
    with app.app_context():
        user = db.session.scalars(sa.select(User)).one()
        assert user.tenant_id is not None and user.role == "tenant-editor"


def test_bootstrap_creates_one_admin_and_loads_the_demo_policy_once(make_app, monkeypatch):
    app = make_app(DEMO_POLICY=True)
    runner = app.test_cli_runner()
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    first = runner.invoke(args=["bootstrap"])
    assert first.exit_code == 0, first.output
    assert "with password:" in first.output
    assert "Loaded the demo policy" in first.output
    second = runner.invoke(args=["bootstrap"])
    assert second.output == ""
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 1
        assert db.session.scalar(sa.select(sa.func.count(AuditEntry.id))) == 1


def test_import_of_a_file_nested_past_the_bound_is_refused_without_a_traceback(
        runner, tmp_path, app):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = runner.invoke(args=["cors", "import", str(path)])
    assert result.exit_code == 1
    assert "more than 32 deep" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    with app.app_context():
        assert policy_version() == 0


@pytest.mark.parametrize("command", ["prune-log", "purge-expired"])
@pytest.mark.parametrize("days", ["1e12", "-1", "nan"])
def test_retention_days_out_of_range_are_a_usage_error(runner, command, days):
    result = runner.invoke(args=["cors", command, "--days", days])
    assert result.exit_code == 2
    assert "--days" in result.output
    assert not isinstance(result.exception, OverflowError | ValueError)
