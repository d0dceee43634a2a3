"""``dry_run`` in the JSON API: rule create, replace, change, delete and the import answer what
the change would take away and give, route by route, and write nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.api import URL_PREFIX
from app.extensions import db
from app.models import AllowedOrigin, ApiToken, AuditEntry, Rule, Tenant
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.policy import create_rule
from app.services.tenants import create_tenant

ADMIN = Actor("admin", "cli")


def url(path: str) -> str:
    return URL_PREFIX + path


def _forget(app) -> None:
    with app.app_context():
        db.session.execute(sa.delete(ApiToken))
        owned = sa.select(Rule.id).where(Rule.tenant_id.is_not(None))
        db.session.execute(sa.delete(AllowedOrigin).where(
            AllowedOrigin.tenant_id.is_not(None) | AllowedOrigin.rule_id.in_(owned)))
        db.session.execute(sa.delete(Rule).where(Rule.tenant_id.is_not(None)))
        db.session.execute(sa.delete(Tenant))
        db.session.commit()


@pytest.fixture(autouse=True)
def clean(app):
    _forget(app)
    yield
    _forget(app)


@pytest.fixture
def token(bearer):
    def issue(role: str = "admin", tenant: str | None = None) -> dict[str, str]:
        return bearer(role, tenant)

    return issue


@pytest.fixture
def broad(app) -> int:
    with app.app_context():
        return create_rule({"path": "/api/*", "origins": ["https://a.example.com",
                                                          "https://b.example.com"]},
                           actor=ADMIN).id


def _written(app) -> tuple[int, int, int]:
    with app.app_context():
        return (policy_version(), db.session.scalar(sa.select(sa.func.count(Rule.id))),
                db.session.scalar(sa.select(sa.func.count(AuditEntry.id))))


def test_creating_a_narrower_rule_with_dry_run_names_the_lost_origins(app, client, token,
                                                                      broad):
    headers = token()
    before = _written(app)
    answer = client.post(url("/rules?dry_run=true"), headers=headers, json={
        "path": "/api/orders", "origins": ["https://shop.example.com"],
        "supports_credentials": True})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["dry_run"] is True and body["takes_away"] is True
    route, = body["routes"]
    assert route["route"] == "/api/orders" and route["moves"]
    assert route["before"]["path"] == "/api/*" and route["after"]["path"] == "/api/orders"
    assert route["lost"]["origins"] == ["https://a.example.com", "https://b.example.com"]
    assert route["gained"]["credentials"] is True
    assert body["copy_offers"][0]["origins"] == ["https://a.example.com",
                                                 "https://b.example.com"]
    assert _written(app) == before
    # Without dry_run the same request creates the rule.
    assert client.post(url("/rules"), headers=headers, json={
        "path": "/api/orders"}).status_code == 201


def test_update_replace_and_delete_dry_runs_write_nothing(app, client, token, broad):
    headers = token()
    narrow = client.post(url("/rules"), headers=headers, json={
        "path": "/api/orders", "origins": ["https://s.example.com"]}).get_json()
    before = _written(app)
    patch = client.patch(url(f"/rules/{broad}?dry_run=1"), headers=headers,
                         json={"methods": ["GET"]}).get_json()
    assert patch["takes_away"] and all("POST" in r["lost"]["methods"]
                                       for r in patch["routes"])
    etag = client.get(url(f"/rules/{broad}"), headers=headers).headers["ETag"]
    put = client.put(url(f"/rules/{broad}?dry_run=true"), headers={**headers, "If-Match": etag},
                     json={"path": "/api/*"}).get_json()
    assert put["dry_run"] and "https://a.example.com" in put["losses"][0]
    deleted = client.delete(url(f"/rules/{narrow['id']}?dry_run=true"), headers=headers)
    assert deleted.status_code == 200
    route, = deleted.get_json()["routes"]
    assert route["after"]["path"] == "/api/*"
    assert route["lost"]["origins"] == ["https://s.example.com"]
    assert _written(app) == before


def test_a_refused_change_is_refused_in_a_dry_run_too(client, token, broad):
    answer = client.post(url("/rules?dry_run=true"), headers=token(), json={"path": "/api/*"})
    assert answer.status_code == 422


def test_import_dry_run_carries_the_impact(app, client, token, broad):
    headers = token()
    before = _written(app)
    body = client.post(url("/import?dry_run=true&replace=true"), headers=headers, json={
        "rules": [{"path": "/api/*", "origins": ["https://a.example.com"]}]}).get_json()
    assert body["dry_run"] and body["changed"] == {"/api/*": ["origins"]}
    assert body["impact"]["takes_away"]
    assert all(r["lost"]["origins"] == ["https://b.example.com"]
               for r in body["impact"]["routes"])
    assert _written(app) == before


def test_a_tenant_token_never_sees_platform_origins_in_a_preview(app, client, token):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        create_rule({"path": "/api/t/*/orders", "origins": ["https://secret.example.com"]},
                    actor=ADMIN)
    answer = client.post(url("/rules?dry_run=true"), headers=token("tenant-editor", "acme"),
                         json={"path": "/api/t/acme/orders",
                               "origins": ["https://acme.example.com"]})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert "secret.example.com" not in answer.get_data(as_text=True)
    assert "/api/t/*/orders" not in answer.get_data(as_text=True)
    route, = body["routes"]
    assert route["before"] == {"id": None, "path": None, "hidden": True,
                               "label": "a platform rule"}
    assert route["lost"]["hidden_origins"] == 1 and body["copy_offers"] == []
