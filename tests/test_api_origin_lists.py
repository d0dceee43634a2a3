"""The JSON API of shared origin lists: CRUD, origins, attach and detach, tenant scoping."""

from __future__ import annotations

import pytest

from app.api import URL_PREFIX
from app.services.access import Actor
from app.services.changes import policy_version
from app.services.policy import create_rule
from app.services.tenants import create_tenant
from app.services.tokens import create_token
from cors_control import get_control

ADMIN = Actor("test", "cli")
FRONT = "https://front.example.com"


def url(path: str) -> str:
    return URL_PREFIX + path


@pytest.fixture
def token(app):
    def make(role: str = "admin", tenant: str | None = None) -> dict[str, str]:
        with app.app_context():
            secret = create_token(f"{role}-{tenant}", role, tenant=tenant, actor=ADMIN).secret
        return {"Authorization": f"Bearer {secret}"}
    return make


def test_a_list_is_created_filled_attached_and_served_by_the_engine(app, client, token):
    headers = token()
    with app.app_context():
        rule_id = create_rule({"path": "/api/*"}, actor=ADMIN).id
    created = client.post(url("/origin-lists"), json={"name": "frontends"}, headers=headers)
    assert created.status_code == 201, created.json
    list_id = created.json["id"]
    assert created.headers["Location"].endswith(f"/origin-lists/{list_id}")
    attached = client.put(url(f"/origin-lists/{list_id}/rules/{rule_id}"), headers=headers)
    assert attached.status_code == 200 and attached.json["origin_lists"] == ["frontends"]
    with app.app_context():
        version = policy_version()
    added = client.post(url(f"/origin-lists/{list_id}/origins"), json={"value": FRONT},
                        headers=headers)
    assert added.status_code == 201
    assert added.json["origins"] == [FRONT]
    assert added.json["rules"] == [{"id": rule_id, "path": "/api/*"}]
    with app.app_context():
        assert policy_version() == version + 1
    again = client.post(url(f"/origin-lists/{list_id}/origins"), json={"value": FRONT},
                        headers=headers)
    assert again.status_code == 200
    get_control(app).cache.refresh()
    served = client.get("/api/echo", headers={"Origin": FRONT})
    assert served.headers["Access-Control-Allow-Origin"] == FRONT
    # The rule read with GET (origin_lists included) can be sent back as it is.
    rule = client.get(url(f"/rules/{rule_id}"), headers=headers)
    assert rule.json["origin_lists"] == ["frontends"]
    body = {k: v for k, v in rule.json.items() if k not in ("id",)}
    replaced = client.put(url(f"/rules/{rule_id}"), json=body,
                          headers={**headers, "If-Match": rule.headers["ETag"]})
    assert replaced.status_code == 200, replaced.json
    refused = client.delete(url(f"/origin-lists/{list_id}"), headers=headers)
    assert refused.status_code == 409 and "/api/*" in refused.json["detail"]
    removed = client.delete(url(f"/origin-lists/{list_id}/origins/https%3A%2F%2Ffront.example.com"),
                            headers=headers)
    assert removed.status_code == 204
    assert client.get(url(f"/origin-lists/{list_id}"), headers=headers).json["origins"] == []
    assert client.delete(url(f"/origin-lists/{list_id}?detach=true"),
                         headers=headers).status_code == 204


def test_a_bad_origin_and_a_bad_name_are_422_with_the_field(client, token):
    headers = token()
    bad = client.post(url("/origin-lists"), json={"name": "Front Ends",
                                                  "origins": ["https://a.example/"]},
                      headers=headers)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json["errors"]} == {"name", "origins[0]"}


def test_tenant_tokens_see_platform_lists_read_only_and_not_other_tenants(app, client, token):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/t/globex/*"], actor=ADMIN)
    admin = token()
    acme = token("tenant-editor", "acme")
    platform = client.post(url("/origin-lists"), json={"name": "frontends"},
                           headers=admin).json["id"]
    theirs = client.post(url("/origin-lists"), json={"name": "shops", "tenant": "globex"},
                         headers=admin).json["id"]
    listed = client.get(url("/origin-lists"), headers=acme).json
    assert [(item["name"], item["writable"]) for item in listed["items"]] == [
        ("frontends", False)]
    assert client.get(url(f"/origin-lists/{theirs}"), headers=acme).status_code == 404
    assert client.post(url(f"/origin-lists/{platform}/origins"), json={"value": FRONT},
                       headers=acme).status_code == 403
    assert client.post(url(f"/origin-lists/{theirs}/origins"), json={"value": FRONT},
                       headers=acme).status_code == 404
    assert client.post(url("/origin-lists"), json={"name": "x", "tenant": "globex"},
                       headers=acme).status_code == 404
    own = client.post(url("/origin-lists"), json={"name": "shops"}, headers=acme)
    assert own.status_code == 201 and own.json["tenant"] == "acme"
    # A platform rule never uses a tenant's list.
    with app.app_context():
        rule_id = create_rule({"path": "/api/*"}, actor=ADMIN).id
    refused = client.put(url(f"/origin-lists/{own.json['id']}/rules/{rule_id}"), headers=admin)
    assert refused.status_code == 422 and "platform" in refused.json["errors"][0]["message"]
    viewer = token("viewer")
    assert client.post(url("/origin-lists"), json={"name": "y"},
                       headers=viewer).status_code == 403
