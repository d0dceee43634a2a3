"""The API tokens page: a secret shown once, stored hashed; roles, tenants, expiry, revoking."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ApiToken, AuditEntry
from app.services.access import Actor
from app.services.tenants import create_tenant
from app.services.tokens import create_token, hash_secret

HTMX = {"HX-Request": "true"}
ADMIN = Actor("root@example.com", "cli")
SECRET = re.compile(r'<output id="token-secret" class="mono secret">([^<]+)</output>')


def _token(app, name: str) -> ApiToken:
    with app.app_context():
        token = db.session.scalars(sa.select(ApiToken).where(ApiToken.name == name)).one()
        db.session.expunge(token)
        return token


def _create(admin, **form):
    data = {"name": "deploy-bot", "role": "editor", "tenant": "", "expires_at": "", **form}
    return admin.post("/admin/tokens", data={**data, "csrf_token": admin.csrf})


def test_tokens_page_is_a_page_and_a_fragment(sign_in):
    admin = sign_in("admin")
    page = admin.get("/admin/tokens")
    fragment = admin.get("/admin/tokens", headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.get_data(as_text=True)
    assert "<html" not in fragment.get_data(as_text=True)
    for response in (page, fragment):
        assert 'action="/admin/tokens"' in response.get_data(as_text=True)
        assert "HX-Request" in response.headers["Vary"]


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_admins_may_see_create_or_revoke_tokens(app, sign_in, role):
    with app.app_context():
        token_id = create_token("ci", "viewer", actor=ADMIN).token.id
    client = sign_in(role)
    assert client.get("/admin/tokens").status_code == 403
    assert _create(client).status_code == 403
    response = client.post(f"/admin/tokens/{token_id}/revoke",
                           data={"csrf_token": client.csrf})
    assert response.status_code == 403
    assert _token(app, "ci").revoked_at is None


@pytest.mark.parametrize("headers", [{}, HTMX])
def test_a_created_token_shows_its_secret_once_and_stores_only_its_hash(app, sign_in,
                                                                       headers):
    admin = sign_in("admin")
    data = {"name": "deploy-bot", "role": "editor", "tenant": "", "expires_at": "",
            "csrf_token": admin.csrf}
    response = admin.post("/admin/tokens", data=data, headers=headers)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    secret = SECRET.search(body).group(1)
    assert "it is shown only this once" in body
    token = _token(app, "deploy-bot")
    assert token.token_hash == hash_secret(secret) and secret not in token.token_hash
    assert (token.role, token.tenant_id, token.created_by) == ("editor", None,
                                                               admin.user_email)
    later = admin.get("/admin/tokens").get_data(as_text=True)
    assert "deploy-bot" in later
    assert secret not in later and token.token_hash not in later
    api = app.test_client().get("/admin/api/v1/tokens/self",
                                headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200 and api.get_json()["name"] == "deploy-bot"


def test_a_tenant_token_with_an_expiry_is_listed_with_its_tenant_state_and_last_use(
        app, sign_in):
    with app.app_context():
        create_tenant("acme", actor=ADMIN)
    admin = sign_in("admin")
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(second=0, microsecond=0)
    response = _create(admin, name="acme-ci", role="tenant-editor", tenant="acme",
                       expires_at=expires.strftime("%Y-%m-%dT%H:%M"))
    secret = SECRET.search(response.get_data(as_text=True)).group(1)
    token = _token(app, "acme-ci")
    assert token.tenant_id is not None
    assert token.expires_at.replace(tzinfo=UTC) == expires
    app.test_client().get("/admin/api/v1/tokens/self",
                          headers={"Authorization": f"Bearer {secret}"})
    row = admin.get("/admin/tokens").get_data(as_text=True).split('id="token-')[1]
    assert "<code>acme</code>" in row and ">active<" in row
    assert expires.strftime("%Y-%m-%d %H:%M") in row
    assert ">never<" not in row.split("</td>")[5]  # last used: now


@pytest.mark.parametrize(("form", "field_message"), [
    ({"role": "tenant-editor"}, "a tenant-editor token needs a tenant"),
    ({"role": "editor", "tenant": "acme"}, "a editor token is not scoped to a tenant"),
    ({"role": "owner"}, "role must be one of admin, editor, viewer"),
    ({"name": " "}, "name the token after its use"),
    ({"expires_at": "2001-01-01T00:00"}, "the expiry is in the past"),
    ({"expires_at": "next tuesday"}, "expires_at must be an ISO 8601 time"),
])
def test_creating_a_token_with_bad_input_shows_the_message_and_creates_nothing(
        app, sign_in, form, field_message):
    with app.app_context():
        create_tenant("acme", actor=ADMIN)
    admin = sign_in("admin")
    response = _create(admin, **form)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert field_message in body and SECRET.search(body) is None
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 0


def test_a_second_token_with_the_same_name_is_refused(app, sign_in):
    admin = sign_in("admin")
    _create(admin)
    response = _create(admin, role="viewer")
    assert response.status_code == 422
    assert "a token named deploy-bot already exists" in response.get_data(as_text=True)
    assert _token(app, "deploy-bot").role == "editor"


def test_a_revoked_token_stops_working_and_shows_as_revoked(app, sign_in):
    with app.app_context():
        issued = create_token("ci", "viewer", actor=ADMIN)
        token_id, secret = issued.token.id, issued.secret
    admin = sign_in("admin")
    page = admin.get("/admin/tokens").get_data(as_text=True)
    assert 'data-confirm="Revoke the token ci? Scripts using it stop working at once."' in page
    response = admin.post(f"/admin/tokens/{token_id}/revoke", headers=HTMX,
                          data={"csrf_token": admin.csrf})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert "Revoked token ci: it stops working at once." in body and ">revoked<" in body
    api = app.test_client().get("/admin/api/v1/tokens/self",
                                headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 401
    again = admin.post(f"/admin/tokens/{token_id}/revoke", follow_redirects=True,
                       data={"csrf_token": admin.csrf})
    assert "Token ci was already revoked; nothing changed." in again.get_data(as_text=True)
    with app.app_context():
        actions = list(db.session.scalars(sa.select(AuditEntry.actor).where(
            AuditEntry.action == "token.revoke")))
    assert actions == [admin.user_email]


def test_revoking_an_unknown_token_is_not_found(sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/tokens/999/revoke", data={"csrf_token": admin.csrf})
    assert response.status_code == 404
