"""Sessions end when they should: at logout, password reset, disabling and role change (every
session of that user), after the lifetime and the idle timeout; sign-in starts a new session."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from app.auth.sessions import LAST_SEEN, SIGNED_IN_AT
from app.config import Config
from app.extensions import db
from app.models import User
from tests.conftest import PASSWORD, csrf_token_of, csrf_token_of_signed_in

NEW_PASSWORD = "another-long-password"
SESSION_COOKIE = "session"


def _copy(app, client: FlaskClient) -> FlaskClient:
    """A second browser holding a copy of *client*'s session cookie, as a thief would."""
    thief = app.test_client()
    thief.set_cookie(SESSION_COOKIE, client.get_cookie(SESSION_COOKIE).value)
    return thief


def _opens_rules(client: FlaskClient) -> bool:
    response = client.get("/admin/rules")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def _user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(User.id).where(User.email == email))


def _sign_in(app, email: str, password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    response = client.post("/admin/login", data={
        "email": email, "password": password, "csrf_token": csrf_token_of(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def _admin_posts(admin: FlaskClient, path: str, **form: str) -> None:
    response = admin.post(path, data={**form, "csrf_token": admin.csrf})
    assert response.status_code == 302, response.get_data(as_text=True)


def test_a_cookie_copied_before_logout_no_longer_opens_pages_after_logout(app, sign_in):
    client = sign_in("viewer")
    thief = _copy(app, client)
    assert _opens_rules(thief)
    client.post("/admin/logout", data={"csrf_token": client.csrf})
    assert not _opens_rules(thief)
    assert not _opens_rules(client)


def test_signing_out_again_from_a_second_tab_is_not_an_error(sign_in):
    client = sign_in("viewer")
    first = client.post("/admin/logout", data={"csrf_token": client.csrf})
    second = client.post("/admin/logout", data={"csrf_token": client.csrf})
    assert first.status_code == second.status_code == 302
    assert not _opens_rules(client)


def test_logout_ends_the_users_sessions_in_other_browsers_too(app, sign_in):
    laptop = sign_in("viewer")
    phone = _sign_in(app, laptop.user_email)
    assert _opens_rules(phone)
    laptop.post("/admin/logout", data={"csrf_token": laptop.csrf})
    assert not _opens_rules(phone)


def test_a_password_reset_by_an_admin_ends_the_users_sessions(app, sign_in):
    admin = sign_in("admin")
    user = sign_in("editor")
    thief = _copy(app, user)
    assert _opens_rules(thief)
    _admin_posts(admin, f"/admin/users/{_user_id(app, user.user_email)}/password",
                 password=NEW_PASSWORD)
    assert not _opens_rules(thief)
    assert not _opens_rules(user)
    assert _opens_rules(_sign_in(app, user.user_email, NEW_PASSWORD))


def test_disabling_ends_sessions_and_re_enabling_does_not_revive_them(app, sign_in):
    admin = sign_in("admin")
    user = sign_in("editor")
    thief = _copy(app, user)
    user_id = _user_id(app, user.user_email)
    _admin_posts(admin, f"/admin/users/{user_id}/disable")
    assert not _opens_rules(thief)
    _admin_posts(admin, f"/admin/users/{user_id}/enable")
    assert not _opens_rules(thief)
    assert not _opens_rules(user)
    assert _opens_rules(_sign_in(app, user.user_email))


def test_a_role_change_ends_the_users_sessions(app, sign_in):
    admin = sign_in("admin")
    user = sign_in("editor")
    thief = _copy(app, user)
    _admin_posts(admin, f"/admin/users/{_user_id(app, user.user_email)}/role", role="viewer")
    assert not _opens_rules(thief)
    assert not _opens_rules(user)


def test_an_admin_changing_their_own_password_stays_signed_in_here_only(app, sign_in):
    admin = sign_in("admin")
    sign_in("admin")  # so there is another admin, as in real life
    thief = _copy(app, admin)
    _admin_posts(admin, f"/admin/users/{_user_id(app, admin.user_email)}/password",
                 password=NEW_PASSWORD)
    assert _opens_rules(admin)
    assert not _opens_rules(thief)


def test_changing_another_user_leaves_the_acting_admin_signed_in(app, sign_in):
    admin = sign_in("admin")
    user = sign_in("viewer")
    _admin_posts(admin, f"/admin/users/{_user_id(app, user.user_email)}/disable")
    assert _opens_rules(admin)


def test_the_csrf_token_from_before_sign_in_is_refused_after_it(app, sign_in):
    from app.services.users import create_user

    with app.app_context():
        create_user("ops@example.com", PASSWORD, role="admin")
    client = app.test_client()
    before = csrf_token_of(client)
    response = client.post("/admin/login", data={
        "email": "ops@example.com", "password": PASSWORD, "csrf_token": before})
    assert response.status_code == 302
    refused = client.post("/admin/logout", data={"csrf_token": before})
    assert refused.status_code == 400
    assert _opens_rules(client)
    after = csrf_token_of_signed_in(client)
    assert after != before
    assert client.post("/admin/logout", data={"csrf_token": after}).status_code == 302


def test_sign_in_starts_a_new_session_without_what_was_stored_before(app, sign_in):
    from app.services.users import create_user

    with app.app_context():
        create_user("ops@example.com", PASSWORD, role="admin")
    client = app.test_client()
    token = csrf_token_of(client)
    with client.session_transaction() as session:
        session["planted"] = "by an attacker before sign-in"
    client.post("/admin/login", data={
        "email": "ops@example.com", "password": PASSWORD, "csrf_token": token})
    with client.session_transaction() as session:
        assert "planted" not in session
        assert session.get("csrf_token") is None or session["csrf_token"] != token


def test_a_session_idle_longer_than_the_idle_timeout_is_signed_out(app, sign_in):
    client = sign_in("viewer")
    idle = app.config["SESSION_IDLE_TIMEOUT"].total_seconds()
    with client.session_transaction() as session:
        session[LAST_SEEN] = int(time.time() - idle - 5)
    response = client.get("/admin/rules")
    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "signed out after 60 minutes without activity" in page
    assert not _opens_rules(client)


def test_an_idle_htmx_request_redirects_the_whole_page_to_sign_in(app, sign_in):
    client = sign_in("viewer")
    with client.session_transaction() as session:
        session[LAST_SEEN] = int(time.time() - 2 * 3600)
    response = client.get("/admin/rules", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"].startswith("/admin/login")


def test_activity_within_the_idle_timeout_keeps_the_session_and_moves_last_seen(app, sign_in):
    client = sign_in("viewer")
    earlier = int(time.time() - 30 * 60)
    with client.session_transaction() as session:
        session[LAST_SEEN] = earlier
    assert _opens_rules(client)
    with client.session_transaction() as session:
        assert session[LAST_SEEN] > earlier + 29 * 60


def test_last_seen_is_written_at_most_once_a_minute(app, sign_in):
    client = sign_in("viewer")
    recent = int(time.time() - 10)
    with client.session_transaction() as session:
        session[LAST_SEEN] = recent
    response = client.get("/admin/rules")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    with client.session_transaction() as session:
        assert session[LAST_SEEN] == recent


def test_a_session_older_than_its_lifetime_ends_even_while_in_use(app, sign_in):
    client = sign_in("viewer")
    lifetime = app.permanent_session_lifetime.total_seconds()
    with client.session_transaction() as session:
        session[SIGNED_IN_AT] = int(time.time() - lifetime - 5)
        session[LAST_SEEN] = int(time.time())
    assert not _opens_rules(client)


def test_a_cookie_naming_the_numeric_user_id_signs_nobody_in(app, sign_in):
    """Cookies from before session tokens carried the user id; they no longer load a user."""
    client = sign_in("admin")
    with client.session_transaction() as session:
        session["_user_id"] = str(_user_id(app, client.user_email))
    assert not _opens_rules(client)


def test_a_short_idle_timeout_from_the_configuration_applies(make_app):
    from app.services.users import create_user

    app = make_app(SESSION_IDLE_TIMEOUT=timedelta(minutes=5))
    with app.app_context():
        create_user("ops@example.com", PASSWORD, role="viewer")
    client = _sign_in(app, "ops@example.com")
    with client.session_transaction() as session:
        session[LAST_SEEN] = int(time.time() - 6 * 60)
    assert not _opens_rules(client)


def test_lifetimes_default_to_twelve_hours_and_an_hour_idle(app):
    assert app.permanent_session_lifetime == timedelta(hours=12)
    assert app.config["SESSION_IDLE_TIMEOUT"] == timedelta(minutes=60)


@pytest.mark.parametrize(("variable", "value", "setting", "expected"), [
    ("SESSION_LIFETIME_HOURS", "8", "PERMANENT_SESSION_LIFETIME", timedelta(hours=8)),
    ("SESSION_IDLE_MINUTES", "15", "SESSION_IDLE_TIMEOUT", timedelta(minutes=15)),
    ("TRUSTED_PROXIES", "2", "TRUSTED_PROXIES", 2),
])
def test_session_and_proxy_settings_come_from_the_environment(monkeypatch, variable, value,
                                                               setting, expected):
    monkeypatch.setenv(variable, value)
    assert getattr(Config(), setting) == expected


@pytest.mark.parametrize(("variable", "value"), [
    ("SESSION_IDLE_MINUTES", "0"), ("SESSION_LIFETIME_HOURS", "soon"),
    ("TRUSTED_PROXIES", "-1"), ("TRUSTED_PROXIES", "one"),
])
def test_bad_session_and_proxy_settings_are_refused_with_the_variable_named(monkeypatch,
                                                                             variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        Config()


def test_a_csrf_token_is_good_for_as_long_as_its_session(app, sign_in):
    """A dashboard page used through htmx for more than an hour keeps working."""
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 2 * 3600

    client = sign_in("admin")
    with client.session_transaction() as session:
        raw = session["csrf_token"]
        session[LAST_SEEN] = int(time.time())
    old_token = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token",
                                       signer=TwoHoursAgo).dumps(raw)
    response = client.post("/admin/logout", data={"csrf_token": old_token})
    assert response.status_code == 302
