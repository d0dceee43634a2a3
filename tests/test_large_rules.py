"""Rules with many origins: an import writes them as plain rows, exactly as the ORM would;
replacing or deleting such a rule leaves no origin behind; one page of them is read in the
order of the whole list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.extensions import db
from app.models import AllowedOrigin, AuditEntry, Rule, Tenant
from app.services.access import Actor
from app.services.policy import add_origin, create_rule, delete_rule, import_policy
from app.services.policy_read import origin_page, rule_to_dict

ALICE = Actor("alice", "dashboard")


def _count(model) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def test_an_imported_expiry_is_stored_as_the_orm_stores_it_and_compares_in_queries(app):
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    with app.app_context():
        import_policy({"rules": [{"path": "/api/*", "origins": [
            {"value": "https://a.example.com", "expires_at": expires.isoformat()}]}]},
            actor=ALICE)
        rule = db.session.scalar(sa.select(Rule))
        add_origin(rule.id, "https://b.example.com", actor=ALICE, expires_at=expires)
        stored = db.session.execute(sa.text(
            "SELECT value, CAST(expires_at AS TEXT), added_at IS NOT NULL FROM allowed_origins "
            "ORDER BY value")).all()
        assert stored[0][1:] == stored[1][1:]  # imported (rows) and added (ORM) alike
        window = sa.select(AllowedOrigin.value).where(
            AllowedOrigin.expires_at > expires - timedelta(seconds=1),
            AllowedOrigin.expires_at < expires + timedelta(seconds=1))
        assert sorted(db.session.scalars(window)) == ["https://a.example.com",
                                                     "https://b.example.com"]


def test_an_import_changes_only_the_origins_that_differ(app):
    with app.app_context():
        import_policy({"rules": [{"path": "/api/*", "origins": [
            "https://a.example.com", "https://b.example.com"]}]}, actor=ALICE)
        kept = db.session.scalar(sa.select(AllowedOrigin.id).where(
            AllowedOrigin.value == "https://a.example.com"))
        result = import_policy({"rules": [{"path": "/api/*", "origins": [
            {"value": "https://a.example.com", "note": "kept"}, "https://c.example.com"]}]},
            actor=ALICE)
        assert result.changed == {"/api/*": ["origins"]}
        rows = db.session.execute(sa.select(AllowedOrigin.id, AllowedOrigin.value,
                                            AllowedOrigin.note)
                                  .order_by(AllowedOrigin.value)).all()
        assert [(r.value, r.note) for r in rows] == [("https://a.example.com", "kept"),
                                                     ("https://c.example.com", "")]
        assert rows[0].id == kept
        rule = db.session.scalar(sa.select(Rule))
        assert rule_to_dict(rule)["origins"] == [
            {"value": "https://a.example.com", "note": "kept"}, "https://c.example.com"]
        entry = db.session.scalar(sa.select(AuditEntry).order_by(AuditEntry.id.desc()))
        assert entry.before["rules"]["/api/*"]["origins"] == ["https://a.example.com",
                                                             "https://b.example.com"]


def test_replacing_and_deleting_rules_leave_no_origin_behind(app):
    with app.app_context():
        import_policy({"rules": [
            {"path": "/api/a/*", "origins": [f"https://a{i}.example.com" for i in range(30)]},
            {"path": "/api/b/*", "origins": ["https://b.example.com"]}]}, actor=ALICE)
        result = import_policy({"rules": [{"path": "/api/b/*",
                                           "origins": ["https://b.example.com"]}]},
                               actor=ALICE, replace=True)
        assert result.removed == ["/api/a/*"]
        assert _count(AllowedOrigin) == 1
        entry = db.session.scalar(sa.select(AuditEntry).order_by(AuditEntry.id.desc()))
        assert len(entry.before["rules"]["/api/a/*"]["origins"]) == 30
        rule = db.session.scalar(sa.select(Rule))
        delete_rule(rule.id, actor=ALICE)
        assert (_count(Rule), _count(AllowedOrigin)) == (0, 0)


def test_a_page_of_origins_follows_the_order_of_the_whole_list(app):
    with app.app_context():
        for slug in ("acme", "globex"):
            db.session.add(Tenant(slug=slug, name=slug, paths=[]))
        db.session.commit()
        rule = create_rule({"path": "/api/*", "tenant_selector": {
            "source": "header", "key": "X-Tenant", "unknown": "refuse"},
            "origins": ["https://s1.example.com", "https://s2.example.com",
                        "https://s3.example.com",
                        {"value": "https://g.example.com", "tenant": "globex"},
                        {"value": "https://a2.example.com", "tenant": "acme"},
                        {"value": "https://a1.example.com", "tenant": "acme"}]}, actor=ALICE)
        whole = [o.value for o in origin_page(rule, page=1, per_page=100).items]
        assert whole == [o if isinstance(o, str) else o["value"]
                         for o in rule_to_dict(rule)["origins"]]
        pages = [origin_page(rule, page=p, per_page=2) for p in (1, 2, 3, 4)]
        assert [[o.value for o in p.items] for p in pages] == [
            whole[0:2], whole[2:4], whole[4:6], []]
        assert [p.has_next for p in pages] == [True, True, False, False]
        assert {p.total for p in pages} == {6}
        acme = Actor("t", "api", "tenant-viewer",
                     tenant_id=db.session.scalar(sa.select(Tenant.id).where(
                         Tenant.slug == "acme")))
        seen = origin_page(rule, acme, page=1, per_page=100)
        assert [o.value for o in seen.items] == ["https://a1.example.com",
                                                 "https://a2.example.com"]
        assert seen.total == 2
