"""Find an origin through shared lists: the answer names the list and each rule using it, in
the service, the rules search, the API and the CLI, and a tenant role never sees another
tenant's list or rules."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.api import URL_PREFIX
from app.extensions import db
from app.models import Tenant
from app.services import origin_lists as lists
from app.services.access import Actor
from app.services.origin_find import find_origin
from app.services.policy import create_rule
from app.services.tenants import create_tenant
from app.services.tokens import create_token
from cors_control import get_control

ADMIN = Actor("admin@example.com", "cli")
FRONT = "https://front.example.com"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def world(app):
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=ADMIN)
        create_tenant("globex", "Globex", paths=["/api/t/globex/*"], actor=ADMIN)
        platform_rule = create_rule({"path": "/api/*"}, actor=ADMIN).id
        shared_rule = create_rule({"path": "/api/t/*/orders", "tenant_selector": {
            "source": "view-arg", "key": "tenant"}}, actor=ADMIN).id
        acme_rule = create_rule({"path": "/api/t/acme/orders", "tenant": "acme"},
                                actor=ADMIN).id
        globex_rule = create_rule({"path": "/api/t/globex/orders", "tenant": "globex"},
                                  actor=ADMIN).id
        create_rule({"path": "/other", "origins": [FRONT]}, actor=ADMIN)
        frontends = lists.create_list({"name": "frontends", "origins": [
            "https://*.example.com"]}, actor=ADMIN).id
        shops = lists.create_list({"name": "shops", "tenant": "acme", "origins": [FRONT]},
                                  actor=ADMIN).id
        theirs = lists.create_list({"name": "globex-shops", "tenant": "globex",
                                    "origins": [FRONT]}, actor=ADMIN).id
        lists.create_list({"name": "unused", "origins": [FRONT]}, actor=ADMIN)
        for rule in (platform_rule, shared_rule, acme_rule):
            lists.attach_list(rule, frontends, actor=ADMIN)
        lists.attach_list(acme_rule, shops, actor=ADMIN)
        lists.attach_list(globex_rule, theirs, actor=ADMIN)
        tenants = {slug: tenant_id for slug, tenant_id in db.session.execute(
            sa.select(Tenant.slug, Tenant.id))}
    get_control(app).cache.refresh()
    return {"frontends": frontends, "shops": shops, "tenants": tenants}


def rows(grants) -> list[tuple[str, str, str | None, str | None]]:
    return [(g.rule_path, g.entry, g.list_name, g.list_tenant) for g in grants]


def test_find_names_the_list_of_each_entry_once_per_rule_using_it(app, world):
    with app.app_context():
        origin, grants = find_origin(FRONT)
    assert origin == FRONT
    assert rows(grants) == [
        ("/api/*", "https://*.example.com", "frontends", None),
        ("/api/t/*/orders", "https://*.example.com", "frontends", None),
        ("/api/t/acme/orders", "https://*.example.com", "frontends", None),
        ("/api/t/acme/orders", FRONT, "shops", "acme"),
        ("/api/t/globex/orders", FRONT, "globex-shops", "globex"),
        ("/other", FRONT, None, None),  # the rule's own entry; the unused list allows nothing
    ]
    assert not grants[0].exact and grants[3].exact
    assert grants[0].as_dict()["list"] == {"id": world["frontends"], "name": "frontends",
                                           "tenant": None}
    assert grants[-1].as_dict()["list"] is None
    with app.app_context():
        assert find_origin("https://front.example.org")[1] == []


def test_a_tenant_role_finds_its_lists_and_the_platforms_never_another_tenants(app, world):
    acme = Actor("v@acme", "dashboard", "tenant-viewer", world["tenants"]["acme"])
    globex = Actor("v@globex", "dashboard", "tenant-viewer", world["tenants"]["globex"])
    with app.app_context():
        assert rows(find_origin(FRONT, actor=acme)[1]) == [
            ("/api/t/*/orders", "https://*.example.com", "frontends", None),
            ("/api/t/acme/orders", "https://*.example.com", "frontends", None),
            ("/api/t/acme/orders", FRONT, "shops", "acme"),
        ]
        assert rows(find_origin(FRONT, actor=globex)[1]) == [
            ("/api/t/*/orders", "https://*.example.com", "frontends", None),
            ("/api/t/globex/orders", FRONT, "globex-shops", "globex"),
        ]


def test_the_rules_search_names_the_list_and_links_to_it(app, world, sign_in):
    page = sign_in("viewer").get("/admin/rules", headers=HTMX,
                                 query_string={"q": FRONT}).get_data(as_text=True)
    assert "from the shared list" in page
    assert f'href="/admin/lists#list-{world["shops"]}">shops</a>' in page
    assert "<code>acme</code>" in page and "globex-shops" in page
    tenant = sign_in("tenant-viewer", tenant="acme").get(
        "/admin/rules", query_string={"q": FRONT}).get_data(as_text=True)
    assert ">shops</a>" in tenant and ">frontends</a>" in tenant
    assert "globex" not in tenant and "/other" not in tenant


def test_the_api_and_the_cli_name_the_list(app, client, world, runner):
    with app.app_context():
        secret = create_token("acme-bot", "tenant-viewer", tenant="acme", actor=ADMIN).secret
    body = client.get(f"{URL_PREFIX}/rules", query_string={"origin": FRONT},
                      headers={"Authorization": f"Bearer {secret}"}).get_json()
    assert [(i["rule"], i["list"] and i["list"]["name"]) for i in body["items"]] == [
        ("/api/t/*/orders", "frontends"), ("/api/t/acme/orders", "frontends"),
        ("/api/t/acme/orders", "shops")]
    assert body["items"][2]["list"] == {"id": world["shops"], "name": "shops",
                                        "tenant": "acme"}
    found = runner.invoke(args=["cors", "find", FRONT])
    assert found.exit_code == 0, found.output
    lines = found.output.splitlines()
    assert lines[0].split()[:4] == ["RULE", "ENTRY", "MATCH", "LIST"]
    assert any(line.split()[:4] == ["/api/t/acme/orders", FRONT, "exact", "acme/shops"]
               for line in lines)
    assert any(line.split()[:4] == ["/other", FRONT, "exact", "-"] for line in lines)
    as_json = json.loads(runner.invoke(args=["cors", "find", FRONT, "--json"]).output)
    assert [i["list"]["name"] if i["list"] else None for i in as_json["items"]] == [
        "frontends", "frontends", "frontends", "shops", "globex-shops", None]
