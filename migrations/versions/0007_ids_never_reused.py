"""ids are never reused: AUTOINCREMENT on SQLite

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 17:20:00

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table plus one, so
deleting the newest rule and creating another reuses its id: old audit entries and request
log rows would then name the new rule. PostgreSQL's serial and identity columns never
reuse a value, so this revision changes nothing there.

SQLite cannot add AUTOINCREMENT to a column, so each table is rebuilt (copied, with its
indexes and constraints) by Alembic's batch mode. The copied rows keep their ids, and the
sequence starts after the largest one.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Tables whose ids are shown, linked to or recorded elsewhere (audit entries, log rows).
TABLES = ("tenants", "users", "rules", "allowed_origins", "api_tokens", "audit_entries")


def upgrade():
    _rebuild(autoincrement=True)


def downgrade():
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
