"""The dashboard shows what a change takes away before it is saved: the rule forms' preview
panel (htmx and no-JS review step), the explicit confirmation, copying a broader rule's
origins into a new narrower one, and the page that shows what deleting a rule takes away."""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Rule
from app.services.changes import policy_version

HTMX = {"HX-Request": "true"}
BROAD = {"path": "/api/*", "origins": ["https://a.example.com", "https://b.example.com"]}
FORM = {"methods": "GET, HEAD, POST, OPTIONS, PUT, PATCH, DELETE", "allow_headers": "*",
        "expose_headers": "", "max_age": "", "mode": "enforce", "description": ""}


def _post(client, url: str, data: dict | None = None, **kwargs):
    return client.post(url, data={"csrf_token": client.csrf, **(data or {})}, **kwargs)


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _words(page: str) -> str:
    """The page's text as read: tags dropped, runs of white space made one space."""
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _rule(app, path: str) -> Rule | None:
    with app.app_context():
        rule = db.session.scalar(sa.select(Rule).where(Rule.path == path))
        if rule is not None:
            rule.origins  # noqa: B018 - loaded before leaving the session
            db.session.expunge_all()
        return rule


def _state(app) -> tuple[int, int]:
    with app.app_context():
        return policy_version(), db.session.scalar(sa.select(sa.func.count(AuditEntry.id)))


def _fingerprint(page: str) -> str:
    return re.search(r'name="confirm_impact" value="([0-9a-f]+)"', page).group(1)


def test_creating_a_narrower_rule_asks_for_a_confirmation_naming_the_lost_origins(
        app, policy, sign_in):
    policy(BROAD)
    client = sign_in("editor")
    before = _state(app)
    review = _post(client, "/admin/rules", {**FORM, "path": "/api/orders"})
    page = _text(review)
    assert review.status_code == 200 and "<html" in page
    assert "Not saved yet" in page
    assert "/api/orders: origin https://a.example.com, origin https://b.example.com stop " \
           "applying (answered by /api/orders instead of /api/*)" in page
    assert "Copy the 2 origins of /api/* into this rule" in _words(page)
    assert _rule(app, "/api/orders") is None and _state(app) == before

    # A confirmation for other losses is not one for these.
    stale = _post(client, "/admin/rules", {**FORM, "path": "/api/orders",
                                           "confirm_impact": "0123456789abcdef"})
    assert "Not saved yet" in _text(stale) and _rule(app, "/api/orders") is None

    saved = _post(client, "/admin/rules", {**FORM, "path": "/api/orders",
                                           "confirm_impact": _fingerprint(page)})
    assert saved.status_code == 302
    assert _rule(app, "/api/orders").origins == []


def test_copying_the_broader_rules_origins_takes_nothing_away(app, policy, sign_in):
    policy(BROAD)
    client = sign_in("editor")
    broad_id = _rule(app, "/api/*").id
    saved = _post(client, "/admin/rules", {**FORM, "path": "/api/orders",
                                           "copy_origins": str(broad_id)})
    assert saved.status_code == 302, _text(saved)
    assert sorted(o.value for o in _rule(app, "/api/orders").origins) == [
        "https://a.example.com", "https://b.example.com"]


def test_the_htmx_preview_panel_refreshes_without_writing(app, policy, sign_in):
    policy(BROAD)
    client = sign_in("editor")
    before = _state(app)
    panel = _post(client, "/admin/rules/preview", {**FORM, "path": "/api/orders",
                                                   "supports_credentials": "on"},
                  headers=HTMX)
    page = _text(panel)
    assert panel.status_code == 200 and "<html" not in page
    assert 'id="impact-preview"' in page and "Not saved yet" not in page
    assert "/api/* → /api/orders" in _words(page) and "credentials" in page
    assert "I understand that saving takes this away" in page
    checked = _post(client, "/admin/rules/preview", {
        **FORM, "path": "/api/orders", "supports_credentials": "on",
        "confirm_impact": _fingerprint(page)}, headers=HTMX)
    assert re.search(r'name="confirm_impact" value="[0-9a-f]+" checked', _text(checked))
    invalid = _post(client, "/admin/rules/preview", {**FORM, "path": "api"}, headers=HTMX)
    assert "Preview: path: a path starts with /" in _text(invalid)
    assert _state(app) == before
    # The create form on the list carries the panel, wired to refresh on change.
    listing = _text(client.get("/admin/rules"))
    assert 'hx-post="/admin/rules/preview"' in listing


def test_editing_a_rule_that_drops_a_method_asks_first(app, policy, sign_in):
    policy(BROAD)
    client = sign_in("editor")
    rule = _rule(app, "/api/*")
    form = {**FORM, "path": "/api/*", "methods": "GET", "version": str(rule.version)}
    review = _post(client, f"/admin/rules/{rule.id}", form, headers=HTMX)
    page = _text(review)
    assert "Not saved yet" in page and "method POST" in page
    assert _rule(app, "/api/*").methods != ["GET"]
    saved = _post(client, f"/admin/rules/{rule.id}", {**form,
                                                      "confirm_impact": _fingerprint(page)})
    assert saved.status_code == 302 and _rule(app, "/api/*").methods == ["GET"]
    # A change that takes nothing away saves at once.
    widened = _post(client, f"/admin/rules/{rule.id}", {
        **form, "methods": "GET, POST", "version": str(_rule(app, "/api/*").version)})
    assert widened.status_code == 302


def test_delete_review_names_the_routes_that_fall_back_and_what_they_lose(app, policy,
                                                                         sign_in):
    policy(BROAD, {"path": "/api/orders", "origins": ["https://shop.example.com"],
                   "supports_credentials": True})
    client = sign_in("editor")
    rule = _rule(app, "/api/orders")
    assert f'href="/admin/rules/{rule.id}/delete"' in _text(client.get(f"/admin/rules/{rule.id}"))
    before = _state(app)
    page = _text(client.get(f"/admin/rules/{rule.id}/delete"))
    assert "What deleting /api/orders takes away" in _words(page)
    assert "/api/orders → /api/*" in _words(page)
    assert "origin https://shop.example.com" in page and "credentials" in page
    assert f'action="/admin/rules/{rule.id}/delete"' in page
    assert _state(app) == before
    fragment = _text(client.get(f"/admin/rules/{rule.id}/delete", headers=HTMX))
    assert "<html" not in fragment and 'id="delete-impact"' in fragment
    assert _post(client, f"/admin/rules/{rule.id}/delete").status_code == 302
    assert _rule(app, "/api/orders") is None


def test_a_tenant_editor_sees_no_platform_origins_in_a_preview(app, policy, sign_in):
    from app.services.access import Actor
    from app.services.tenants import create_tenant
    with app.app_context():
        create_tenant("acme", "Acme", paths=["/api/t/acme/*"], actor=Actor("root", "cli"))
    policy({"path": "/api/t/*/orders", "origins": ["https://secret.example.com"]})
    client = sign_in("tenant-editor", tenant="acme")
    panel = _text(_post(client, "/admin/rules/preview", {**FORM, "path": "/api/t/acme/orders"},
                        headers=HTMX))
    assert "a platform rule → /api/t/acme/orders" in _words(panel)
    assert "1 origin(s) you cannot see" in panel
    assert "secret.example.com" not in panel and "/api/t/*/orders" not in panel
    assert "Copy the" not in panel


def test_viewers_cannot_preview(policy, sign_in):
    policy(BROAD)
    client = sign_in("viewer")
    assert _post(client, "/admin/rules/preview", {**FORM, "path": "/api/x"}).status_code == 403
