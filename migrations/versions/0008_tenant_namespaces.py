"""tenant namespaces: the path patterns each tenant's rules may govern

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 18:20:00

Every tenant starts with no namespace: nothing in an older database says which paths a
tenant was meant to govern, and guessing one from its rules would bless the very rules that
took over platform routes. The rules themselves are left as they were (switching off every
tenant-owned rule would break each deployment that upgrades). From this revision on, a write
that creates or moves a tenant-owned rule must keep it inside its tenant's namespaces, and
the overview lists the rules left outside so that an admin gives the tenant its namespace
or switches the rule off (an audited change).
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Dropping a column rebuilds the table on SQLite; the rebuild keeps 0007's AUTOINCREMENT.
KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade():
    with op.batch_alter_table("tenants", table_kwargs=KEEP_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("paths", sa.JSON(), server_default="[]", nullable=False))


def downgrade():
    with op.batch_alter_table("tenants", table_kwargs=KEEP_AUTOINCREMENT) as batch:
        batch.drop_column("paths")
