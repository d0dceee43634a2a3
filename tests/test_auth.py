"""Signing in and out, throttling, sessions, CSRF and security headers."""

from __future__ import annotations

from tests.conftest import PASSWORD, csrf_token_of, csrf_token_of_signed_in


def _create(app, email="ops@example.com", role="admin"):
    from app.services.users import create_user

    with app.app_context():
        create_user(email, PASSWORD, role=role)


def _login(client, email, password, token=None):
    return client.post("/admin/login", data={
        "email": email, "password": password,
        "csrf_token": token if token is not None else csrf_token_of(client)})


def test_admin_pages_redirect_to_sign_in(client):
    response = client.get("/admin/rules")
    assert response.status_code == 302
    assert "/admin/login?next=" in response.headers["Location"]


def test_expired_session_on_an_htmx_request_redirects_the_whole_page(client):
    response = client.get("/admin/rules", headers={"HX-Request": "true"})
    assert response.headers["HX-Redirect"].startswith("/admin/login")
    assert response.get_data() == b""


def test_sign_in_and_out(app, client):
    _create(app)
    response = _login(client, "Ops@Example.com", PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    token = csrf_token_of_signed_in(client)
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_wrong_password_and_unknown_account_get_the_same_answer(app, client):
    _create(app)
    wrong = _login(client, "ops@example.com", "not-the-password")
    unknown = _login(client, "nobody@example.com", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    message = "The email or password is not right, or the account is disabled."
    assert message in wrong.get_data(as_text=True)
    assert message in unknown.get_data(as_text=True)


def test_disabled_user_cannot_sign_in(app, client):
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import User

    _create(app)
    with app.app_context():
        db.session.execute(sa.update(User).values(active=False))
        db.session.commit()
    assert _login(client, "ops@example.com", PASSWORD).status_code == 401


def test_sign_in_without_csrf_token_is_refused(app, client):
    _create(app)
    response = client.post("/admin/login", data={"email": "ops@example.com",
                                                 "password": PASSWORD})
    assert response.status_code == 400


def test_next_parameter_never_redirects_off_site(app, client):
    _create(app)
    token = csrf_token_of(client)
    response = client.post("/admin/login?next=https://evil.example.net/", data={
        "email": "ops@example.com", "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/admin/"


def test_session_cookie_is_httponly_lax_and_secure_over_https(app):
    _create(app)
    client = app.test_client()
    token = csrf_token_of(client)
    response = client.post("/admin/login", base_url="https://localhost", data={
        "email": "ops@example.com", "password": PASSWORD, "csrf_token": token},
        headers={"Referer": "https://localhost/admin/login"})  # CSRF checks it over https
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    plain = app.test_client()
    token = csrf_token_of(plain)
    cookie = plain.post("/admin/login", data={
        "email": "ops@example.com", "password": PASSWORD,
        "csrf_token": token}).headers["Set-Cookie"]
    assert "Secure" not in cookie


def test_admin_responses_carry_security_headers_and_no_cors_headers(sign_in, policy):
    policy({"path": "/*", "origins": ["https://app.example.com"]})
    client = sign_in("viewer")
    for path in ("/admin/", "/admin/login"):
        response = client.get(path, headers={"Origin": "https://app.example.com"})
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert not [h for h in response.headers.keys() if h.lower().startswith("access-")]


def test_every_admin_route_declares_a_role(app):
    """A new dashboard view without a role check fails here."""
    unchecked = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin."):
            view = app.view_functions[rule.endpoint]
            if not getattr(view, "required_role", None):
                unchecked.append(rule.rule)
    assert unchecked == []
