"""shared origin lists: named lists of origins that rules use alongside their own

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 20:10:00

A list belongs to the platform or to one tenant, its name unique per owner. Its entries are
validated as a rule's origins are. A rule's use of a list is a row of rule_origin_lists; a
list in use cannot be deleted (the foreign key restricts it), so deleting one never silently
narrows a rule.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ORIGIN_KINDS = ("exact", "subdomain-wildcard", "any-port", "any")


def upgrade():
    kind_check = "kind IN (" + ", ".join(f"'{k}'" for k in ORIGIN_KINDS) + ")"
    op.create_table(
        "origin_lists",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Integer(),
                  sa.ForeignKey("tenants.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_origin_lists_tenant_id", "origin_lists", ["tenant_id"])
    op.create_index("uq_origin_lists_platform", "origin_lists", ["name"], unique=True,
                    sqlite_where=sa.text("tenant_id IS NULL"),
                    postgresql_where=sa.text("tenant_id IS NULL"))
    op.create_index("uq_origin_lists_tenant", "origin_lists", ["tenant_id", "name"],
                    unique=True, sqlite_where=sa.text("tenant_id IS NOT NULL"),
                    postgresql_where=sa.text("tenant_id IS NOT NULL"))
    op.create_table(
        "origin_list_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("list_id", sa.Integer(),
                  sa.ForeignKey("origin_lists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("value", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("list_id", "value", name=op.f("uq_origin_list_entries_value")),
        sa.CheckConstraint(kind_check, name=op.f("ck_origin_list_entries_kind")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_origin_list_entries_list_id", "origin_list_entries", ["list_id"])
    op.create_table(
        "rule_origin_lists",
        sa.Column("rule_id", sa.Integer(), sa.ForeignKey("rules.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("list_id", sa.Integer(),
                  sa.ForeignKey("origin_lists.id", ondelete="RESTRICT"), primary_key=True),
    )
    op.create_index("ix_rule_origin_lists_list_id", "rule_origin_lists", ["list_id"])


def downgrade():
    op.drop_table("rule_origin_lists")
    op.drop_table("origin_list_entries")
    op.drop_table("origin_lists")
