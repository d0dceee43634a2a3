"""audit entries of origin changes record what changed, not the whole rule twice

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 00:00:00.000000

An entry that adds or removes origins (``origin.add``, ``origin.remove``, ``origin.expire``,
the simulator's fix) records its ``delta``: the origins added and removed and the options it
changed, with ``before`` and ``after`` left empty. Entries written before keep their full
states; readers take both (app/services/audit.py).

The downgrade drops the column: delta entries keep their summary, but lose the origins they
name, and can no longer be undone or restored from.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("audit_entries") as batch:
        batch.add_column(sa.Column("delta", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_column("delta")
