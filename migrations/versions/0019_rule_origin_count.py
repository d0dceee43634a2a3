"""each rule stores its number of origins

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 00:00:00.000000

``rules.origin_count`` is the number of the rule's origins (every tenant's lists included),
kept exact by every write of the admin app (app/services/origin_count.py), so reading a rule
with 100,000 origins does not count them. The upgrade counts the origins already stored; the
downgrade drops the column.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("rules") as batch:
        batch.add_column(sa.Column("origin_count", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.execute("UPDATE rules SET origin_count = (SELECT count(*) FROM allowed_origins "
               "WHERE allowed_origins.rule_id = rules.id)")


def downgrade():
    with op.batch_alter_table("rules") as batch:
        batch.drop_column("origin_count")
