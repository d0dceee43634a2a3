"""a change log of the policy, for incremental snapshots

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 00:00:00

Each policy version records what it changed (a rule, one tenant's allowlist on a rule, a
shared list, the tenants), so a process holding an earlier version reloads only that. A
database upgraded to this revision has no history yet: each process loads in full once.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

KINDS = ("none", "rule", "allowlist", "list", "tenants", "full")


def upgrade():
    op.create_table(
        "policy_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("list_id", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=300), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN (" + ", ".join(f"'{kind}'" for kind in KINDS) + ")",
                           name=op.f("ck_policy_changes_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_policy_changes_version"), "policy_changes", ["version"])
    op.create_index(op.f("ix_policy_changes_recorded_at"), "policy_changes", ["recorded_at"])


def downgrade():
    op.drop_index(op.f("ix_policy_changes_recorded_at"), table_name="policy_changes")
    op.drop_index(op.f("ix_policy_changes_version"), table_name="policy_changes")
    op.drop_table("policy_changes")
