"""rule drafts: a tighter version of an enforced rule, evaluated beside it

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 20:10:00

One draft per rule at most, removed with its rule. The draft's options and allowlist are
one JSON document in the policy file's vocabulary: it is read whole (by the engine's loader
and the dashboard) and written whole (validated as an edit of the rule would be), and
publishing it copies it onto the rule's own columns and allowlist rows.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "rule_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["rules.id"],
                                name=op.f("fk_rule_drafts_rule_id_rules"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_drafts")),
        sa.UniqueConstraint("rule_id", name=op.f("uq_rule_drafts_rule_id")),
        sqlite_autoincrement=True,
    )


def downgrade():
    op.drop_table("rule_drafts")
