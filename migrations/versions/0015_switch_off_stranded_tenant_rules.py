"""switch off tenant rules outside their tenant's namespaces

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 21:40:00

A tenant's rule may govern only paths inside its tenant's namespaces (0008). Rules written
before namespaces existed may lie outside them and so govern platform routes, or another
tenant's, for every caller. This revision switches each such rule off, in one policy version,
with an audit entry per rule (actor ``upgrade 0015``, the rule before and after, as a switch
off from the dashboard records it), and the overview lists them for an admin: give the tenant
a namespace that covers the rule, then switch it back on, or delete it.

To keep such rules serving through an upgrade from before 0008, upgrade to 0008 first
(``flask db upgrade 0008``), give each tenant its namespaces (``flask tenants set-paths``),
then upgrade to the head: only the rules still outside are switched off.

The downgrade leaves the rules off: switching them back on would re-open the platform routes
they took, and the audit trail says which they were.
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from cors_control.paths import PatternError, covers, parse_pattern

# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ACTOR = "upgrade 0015"
CHANNEL = "migration"


def upgrade():
    conn = op.get_bind()
    tenants = {row.id: (row.slug, _json(row.paths) or [])
               for row in conn.execute(sa.text("SELECT id, slug, paths FROM tenants"))}
    rules = conn.execute(sa.text(
        "SELECT * FROM rules WHERE tenant_id IS NOT NULL AND mode != 'off' ORDER BY id")).all()
    stranded = [rule for rule in rules
                if not _inside(rule.path, tenants.get(rule.tenant_id, ("", []))[1])]
    if not stranded:
        return
    now = datetime.now(UTC)
    conn.execute(sa.text("UPDATE policy_state SET version = version + 1, changed_at = :now"),
                 {"now": now})
    version = conn.execute(sa.text("SELECT max(version) FROM policy_state")).scalar() or 0
    for rule in stranded:
        slug, namespaces = tenants[rule.tenant_id]
        before = _rule_dict(conn, rule, tenants)
        after = dict(before, mode="off")
        conn.execute(sa.text(
            "UPDATE rules SET mode = 'off', version = version + 1, updated_at = :now, "
            "updated_by = :actor WHERE id = :id"), {"now": now, "actor": ACTOR, "id": rule.id})
        where = ", ".join(namespaces) if namespaces else "no namespace yet"
        conn.execute(sa.text(
            "INSERT INTO audit_entries (at, actor, channel, action, rule_id, rule_path, "
            "summary, before, after, policy_version, tenant_id) VALUES (:at, :actor, "
            ":channel, 'rule.update', :rule_id, :path, :summary, :before, :after, :version, "
            ":tenant_id)"), {
                "at": now, "actor": ACTOR, "channel": CHANNEL, "rule_id": rule.id,
                "path": rule.path, "version": version, "tenant_id": rule.tenant_id,
                "summary": (f"switched off rule {rule.path} of tenant {slug}: it lies outside "
                            f"the tenant's namespaces ({where}) and could govern routes "
                            "that are not the tenant's"),
                "before": json.dumps(before), "after": json.dumps(after)})


def downgrade():
    """Nothing to undo in the schema; the rules stay off (see the module's docstring)."""


def _inside(path: str, namespaces: list[str]) -> bool:
    try:
        pattern = parse_pattern(path)
    except PatternError:
        return False
    return any(covers(parse_pattern(namespace), pattern) for namespace in namespaces)


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _rule_dict(conn, rule, tenants) -> dict:
    """The rule in the policy file's format, as the audit trail records it."""
    origins = []
    for row in conn.execute(sa.text(
            "SELECT value, note, expires_at, tenant_id FROM allowed_origins "
            "WHERE rule_id = :id"), {"id": rule.id}):
        tenant = tenants[row.tenant_id][0] if row.tenant_id is not None else ""
        if not row.note and row.expires_at is None and not tenant:
            origins.append(row.value)
            continue
        entry = {"value": row.value}
        if row.note:
            entry["note"] = row.note
        if row.expires_at is not None:
            expires = row.expires_at if isinstance(row.expires_at, datetime) \
                else datetime.fromisoformat(str(row.expires_at))
            expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
            entry["expires_at"] = expires.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if tenant:
            entry["tenant"] = tenant
        origins.append(entry)
    origins.sort(key=lambda o: (o.get("tenant", "") if isinstance(o, dict) else "",
                                o["value"] if isinstance(o, dict) else o))
    data = {
        "path": rule.path,
        "origins": origins,
        "methods": _json(rule.methods),
        "allow_headers": _json(rule.allow_headers),
        "expose_headers": _json(rule.expose_headers),
        "supports_credentials": bool(rule.supports_credentials),
        "max_age": rule.max_age,
        "allow_private_network": bool(rule.allow_private_network),
        "mode": rule.mode,
        "description": rule.description or "",
        "tenant": tenants[rule.tenant_id][0],
    }
    if rule.tenant_source != "none":
        data["tenant_selector"] = {"source": rule.tenant_source, "key": rule.tenant_key,
                                   "unknown": rule.unknown_tenant}
    return data
