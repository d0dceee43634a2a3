"""``flask users list``, ``set-password``, ``disable`` and ``enable``: what an operator needs
when someone is locked out or leaves."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, SignInThrottle, User
from app.services.auth import account_key
from tests.conftest import PASSWORD, csrf_token_of

NEW_PASSWORD = "a-brand-new-password"


def _create(app, email: str, role: str = "admin") -> None:
    from app.services.users import create_user

    with app.app_context():
        create_user(email, PASSWORD, role=role)


def _login(client, email: str, password: str):
    return client.post("/admin/login", data={
        "email": email, "password": password, "csrf_token": csrf_token_of(client)})


def _user(app, email: str) -> User:
    with app.app_context():
        user = db.session.scalars(sa.select(User).where(User.email == email)).one()
        db.session.expunge(user)
        return user


def _audit_actions(app) -> list[tuple[str, str]]:
    with app.app_context():
        return [(e.action, e.channel) for e in db.session.scalars(
            sa.select(AuditEntry).order_by(AuditEntry.id))]


def test_set_password_reads_stdin_clears_the_delay_and_ends_sessions(app, runner, sign_in):
    _create(app, "ops@example.com")
    signed_in = sign_in("viewer", email="viewer@example.com")
    attacker = app.test_client()
    for _ in range(12):
        _login(attacker, "ops@example.com", "not-the-password")
    assert _login(app.test_client(), "ops@example.com", PASSWORD).status_code == 429

    result = runner.invoke(args=["users", "set-password", "Ops@Example.com"],
                           input=f"{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "set a new password for ops@example.com" in result.output
    with app.app_context():
        assert db.session.get(SignInThrottle, account_key("ops@example.com")) is None
    assert _login(app.test_client(), "ops@example.com", NEW_PASSWORD).status_code == 302
    assert ("user.password", "cli") in _audit_actions(app)

    assert runner.invoke(args=["users", "set-password", "viewer@example.com"],
                         input=f"{NEW_PASSWORD}\n").exit_code == 0
    assert signed_in.get("/admin/rules").status_code == 302


def test_set_password_refuses_a_short_password_and_an_unknown_user(app, runner):
    _create(app, "ops@example.com")
    before = _user(app, "ops@example.com").password_hash
    short = runner.invoke(args=["users", "set-password", "ops@example.com"], input="short\n")
    assert short.exit_code == 1
    assert "password: use at least 10 characters" in short.output
    assert _user(app, "ops@example.com").password_hash == before
    unknown = runner.invoke(args=["users", "set-password", "nobody@example.com"],
                            input=f"{NEW_PASSWORD}\n")
    assert unknown.exit_code == 1
    assert "there is no user nobody@example.com" in unknown.output


def test_list_shows_every_user_with_role_tenant_and_status(app, runner):
    assert runner.invoke(args=["tenants", "create", "acme"]).exit_code == 0
    _create(app, "ops@example.com")
    _create(app, "gone@example.com", role="viewer")
    from app.services.users import create_user

    with app.app_context():
        create_user("ed@acme.example", PASSWORD, role="tenant-editor", tenant="acme")
    assert runner.invoke(args=["users", "disable", "gone@example.com"]).exit_code == 0
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["EMAIL", "ROLE", "TENANT", "STATUS", "CREATED", "(UTC)"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows == {
        "ed@acme.example": ["tenant-editor", "acme", "active"],
        "gone@example.com": ["viewer", "-", "disabled"],
        "ops@example.com": ["admin", "-", "active"],
    }


def test_list_without_users_says_how_to_create_one(runner):
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    assert "flask users create EMAIL --role admin" in result.output


def test_disable_ends_sessions_and_enable_lets_the_user_sign_in_again(app, runner, sign_in):
    _create(app, "ops@example.com")
    user = sign_in("editor", email="ed@example.com")
    result = runner.invoke(args=["users", "disable", "ed@example.com"])
    assert result.exit_code == 0, result.output
    assert "disabled ed@example.com" in result.output
    assert not _user(app, "ed@example.com").active
    assert user.get("/admin/rules").status_code == 302
    assert _login(app.test_client(), "ed@example.com", PASSWORD).status_code == 401

    assert runner.invoke(args=["users", "enable", "ed@example.com"]).exit_code == 0
    assert user.get("/admin/rules").status_code == 302
    assert _login(app.test_client(), "ed@example.com", PASSWORD).status_code == 302
    assert [a for a in _audit_actions(app) if a[1] == "cli"] == [
        ("user.disable", "cli"), ("user.enable", "cli")]


def test_disabling_the_last_admin_is_refused_with_the_reason(app, runner):
    _create(app, "ops@example.com")
    result = runner.invoke(args=["users", "disable", "ops@example.com"])
    assert result.exit_code == 1
    assert "the last active admin" in result.output
    assert _user(app, "ops@example.com").active
