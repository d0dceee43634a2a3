"""The tenant matrix for shared lists: in every channel a tenant role has, a tenant-editor
of acme cannot change a platform list, another tenant's list, or the lists of a platform
rule, and the engine's answers on those rules' routes do not change."""

from __future__ import annotations

import pytest

from app.api import URL_PREFIX
from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.policy import create_rule
from app.services.tenants import create_tenant
from app.services.tokens import create_token
from cors_control import get_control

ADMIN = Actor("admin@example.com", "cli")
INTRUDER = "https://intruder.acme.example"


@pytest.fixture
def world(app):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/public/*"], actor=ADMIN)
        platform_rule = create_rule({"path": "/api/*"}, actor=ADMIN).id
        shared_rule = create_rule({"path": "/api/t/*/orders", "tenant_selector": {
            "source": "view-arg", "key": "tenant"}}, actor=ADMIN).id
        globex_rule = create_rule({"path": "/api/public/*", "tenant": "globex"},
                                  actor=ADMIN).id
        frontends = lists.create_list({"name": "frontends"}, actor=ADMIN).id
        lists.attach_list(platform_rule, frontends, actor=ADMIN)
        theirs = lists.create_list({"name": "shops", "tenant": "globex"}, actor=ADMIN).id
        lists.attach_list(globex_rule, theirs, actor=ADMIN)
        own = lists.create_list({"name": "mine", "tenant": "acme",
                                 "origins": [INTRUDER]}, actor=ADMIN).id
    return {"platform_rule": platform_rule, "shared_rule": shared_rule, "frontends": frontends,
            "theirs": theirs, "own": own}


def _answers(app, client) -> list[str | None]:
    get_control(app).cache.refresh()
    return [client.get(path, headers={"Origin": INTRUDER}).headers.get(
        "Access-Control-Allow-Origin")
        for path in ("/api/echo", "/api/public/status", "/api/t/acme/orders")]


def _dashboard(sign_in):
    tenant = sign_in("tenant-editor", tenant="acme")

    def add(list_id: int) -> int:
        return tenant.post(f"/admin/lists/{list_id}/origins",
                           data={"origin": INTRUDER, "csrf_token": tenant.csrf}).status_code

    def attach(rule_id: int, list_id: int) -> int:
        response = tenant.post(f"/admin/rules/{rule_id}/lists",
                               data={"list_id": list_id, "csrf_token": tenant.csrf},
                               headers={"HX-Request": "true"})
        # The fragment keeps the rule's lists and says why, in words.
        return 403 if b"only its owner" in response.data else response.status_code

    return add, attach


def _api(app, client):
    with app.app_context():
        secret = create_token("acme-bot", "tenant-editor", tenant="acme", actor=ADMIN).secret
    headers = {"Authorization": f"Bearer {secret}"}

    def add(list_id: int) -> int:
        return client.post(f"{URL_PREFIX}/origin-lists/{list_id}/origins",
                           json={"value": INTRUDER}, headers=headers).status_code

    def attach(rule_id: int, list_id: int) -> int:
        return client.put(f"{URL_PREFIX}/origin-lists/{list_id}/rules/{rule_id}",
                          headers=headers).status_code

    return add, attach


@pytest.mark.parametrize("channel", ["dashboard", "api"])
def test_a_tenant_editor_cannot_reach_beyond_its_tenant_through_lists(
        app, client, sign_in, world, channel):
    add, attach = _dashboard(sign_in) if channel == "dashboard" else _api(app, client)
    before = _answers(app, client)
    assert add(world["frontends"]) == 403  # the platform's: read-only
    assert add(world["theirs"]) == 404  # another tenant's: does not exist
    assert attach(world["shared_rule"], world["own"]) == 403  # a platform rule's lists
    assert attach(world["platform_rule"], world["own"]) == 404  # a rule it cannot see
    assert _answers(app, client) == before == [None, None, None]
    with app.app_context():
        assert lists.get_list(world["frontends"]).entries == []
        assert lists.get_list(world["theirs"]).entries == []
        assert lists.get_list(world["own"]).uses == []  # no rule uses acme's list
