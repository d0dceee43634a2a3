"""The Tenants page: admins list tenants with what they own, create them, delete empty ones."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, ApiToken, AuditEntry, Tenant, User
from app.services.access import Actor
from app.services.policy import add_origin, create_rule
from app.services.tenants import create_tenant
from app.services.tokens import create_token
from app.services.users import create_user
from tests.conftest import PASSWORD

HTMX = {"HX-Request": "true"}
ADMIN = Actor("root@example.com", "cli")
SHARED = {"path": "/api/t/*/orders",
          "tenant_selector": {"source": "view-arg", "key": "tenant", "unknown": "refuse"}}


def _slugs(app) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Tenant.slug).order_by(Tenant.slug)))


def _count(app, model, *conditions) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model)
                                 .where(*conditions))


@pytest.fixture
def acme(app) -> int:
    """Tenant acme with an origin on a shared rule, a user and an API token, no rules."""
    with app.app_context():
        tenant = create_tenant("acme", "Acme Corp", paths=["/api/acme/*"], actor=ADMIN)
        shared = create_rule(SHARED, actor=ADMIN)
        add_origin(shared.id, "https://app.acme.example", actor=ADMIN, tenant="acme")
        create_user("ed@acme.example", PASSWORD, role="tenant-editor", tenant="acme")
        create_token("acme-ci", "tenant-viewer", actor=ADMIN, tenant="acme")
        return tenant.id


def test_tenants_page_lists_tenants_with_their_counts_as_a_page_and_a_fragment(
        app, sign_in, acme):
    admin = sign_in("admin")
    page = admin.get("/admin/tenants")
    fragment = admin.get("/admin/tenants", headers=HTMX)
    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.get_data(as_text=True)
    assert "<html" not in fragment.get_data(as_text=True)
    for response in (page, fragment):
        body = response.get_data(as_text=True)
        assert "Acme Corp" in body and 'action="/admin/tenants"' in body
        assert "HX-Request" in response.headers["Vary"]
    row = page.get_data(as_text=True).split('id="tenant-')[1]
    # rules, origins, users, tokens
    assert [cell.split(">")[1] for cell in row.split('<td class="num"')[1:5]] == \
        ["0</td", "1</td", "1</td", "1</td"]
    assert "Delete tenant acme with its 1 origin, 1 user and 1 API token?" in row


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_admins_may_see_or_change_tenants(app, sign_in, acme, role):
    client = sign_in(role)
    assert client.get("/admin/tenants").status_code == 403
    for url, data in (("/admin/tenants", {"slug": "globex"}),
                      ("/admin/tenants/acme/delete", {})):
        response = client.post(url, data={**data, "csrf_token": client.csrf})
        assert response.status_code == 403, url
    assert _slugs(app) == ["acme"]


def test_admin_creates_a_tenant_and_the_creation_is_audited(app, sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/tenants", follow_redirects=True, data={
        "slug": "globex", "name": "Globex", "csrf_token": admin.csrf})
    assert response.status_code == 200
    assert "Created tenant globex." in response.get_data(as_text=True)
    assert _slugs(app) == ["globex"]
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "tenant.create")).one()
        assert (entry.actor, entry.channel) == (admin.user_email, "dashboard")


@pytest.mark.parametrize(("form", "message", "status"), [
    ({"slug": "Not A Slug"}, "use lowercase letters, digits and hyphens", 422),
    ({"slug": "acme"}, "a tenant acme already exists", 422),
    ({"slug": "ok", "name": "x" * 201}, "the name is longer than 200 characters", 422),
])
def test_creating_a_tenant_with_bad_input_shows_the_message_and_creates_nothing(
        app, sign_in, acme, form, message, status):
    admin = sign_in("admin")
    page = admin.post("/admin/tenants", data={"name": "", **form, "csrf_token": admin.csrf})
    fragment = admin.post("/admin/tenants", headers=HTMX,
                          data={"name": "", **form, "csrf_token": admin.csrf})
    assert page.status_code == status and fragment.status_code == 200
    for response in (page, fragment):
        assert message in response.get_data(as_text=True)
    assert _slugs(app) == ["acme"]


def test_a_tenant_that_owns_rules_is_not_deleted_and_the_page_says_why(app, sign_in, acme):
    with app.app_context():
        create_rule({"path": "/api/acme/*", "tenant": "acme"}, actor=ADMIN)
    admin = sign_in("admin")
    page = admin.get("/admin/tenants").get_data(as_text=True)
    assert "owns 1 rule: delete or reassign it to delete the tenant" in page
    assert 'action="/admin/tenants/acme/delete"' not in page
    response = admin.post("/admin/tenants/acme/delete", headers=HTMX,
                          data={"csrf_token": admin.csrf})
    assert response.status_code == 200
    assert "Tenant acme was not deleted: tenant acme owns 1 rule(s); delete or reassign " \
           "them first." in response.get_data(as_text=True)
    assert _slugs(app) == ["acme"]


def test_deleting_a_tenant_deletes_its_origins_users_and_tokens(app, sign_in, acme):
    admin = sign_in("admin")
    response = admin.post("/admin/tenants/acme/delete", follow_redirects=True,
                          data={"csrf_token": admin.csrf})
    assert "Deleted tenant acme." in response.get_data(as_text=True)
    assert _slugs(app) == []
    assert _count(app, AllowedOrigin, AllowedOrigin.tenant_id == acme) == 0
    assert _count(app, User, User.tenant_id == acme) == 0
    assert _count(app, ApiToken, ApiToken.tenant_id == acme) == 0
    with app.app_context():
        entry = db.session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "tenant.delete")).one()
        assert entry.summary == "deleted tenant acme, its 1 origin(s), 1 user(s) and " \
                                "1 API token(s)"


def test_deleting_an_unknown_tenant_is_not_found(sign_in):
    admin = sign_in("admin")
    response = admin.post("/admin/tenants/nobody/delete", data={"csrf_token": admin.csrf})
    assert response.status_code == 404
