"""API tokens of the data-plane role

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 00:00:00

Hosts that run the engine in control-plane mode fetch the compiled policy from the admin
application and send back their refusals with a token of a role of their own, data-plane,
which may call nothing else. Users cannot hold it: only the API tokens' CHECK widens.

The downgrade deletes the data-plane tokens (the older schema cannot hold them): data planes
then keep serving their last policy until they are given another token.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ROLES = "'admin', 'editor', 'viewer', 'tenant-editor', 'tenant-viewer'"


def upgrade():
    _set_roles(f"role IN ({ROLES}, 'data-plane')")


def downgrade():
    op.execute(sa.text("DELETE FROM api_tokens WHERE role = 'data-plane'"))
    _set_roles(f"role IN ({ROLES})")


def _set_roles(condition: str) -> None:
    # On SQLite the table is rebuilt; it keeps AUTOINCREMENT (0007).
    with op.batch_alter_table("api_tokens",
                              table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint("role", type_="check")
        batch_op.create_check_constraint("role", condition)
