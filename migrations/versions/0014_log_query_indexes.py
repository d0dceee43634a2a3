"""the request log's period queries from one covering index

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 21:45:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

WINDOW_COLUMNS = ["last_seen", "origin", "rule_path", "reason", "mode", "bucket_start", "count",
                  "first_seen", "id"]


def upgrade():
    # The grouped request log (by origin, rule or reason, with each group's trend) and the
    # overview's most refused origins read the rows of a period from this index alone. It
    # holds every column of ix_request_log_top, which it replaces; ix_request_log_chart is a
    # prefix-equivalent of ix_request_log_overview (0013) and goes too: the recorder keeps
    # one index fewer up to date than before.
    op.create_index("ix_request_log_window", "request_log", WINDOW_COLUMNS, unique=False)
    op.drop_index("ix_request_log_top", table_name="request_log")
    op.drop_index("ix_request_log_chart", table_name="request_log")


def downgrade():
    op.create_index("ix_request_log_chart", "request_log",
                    ["bucket_start", "mode", "last_seen", "count"], unique=False)
    op.create_index("ix_request_log_top", "request_log",
                    ["last_seen", "origin", "rule_path", "reason", "mode", "count"], unique=False)
    op.drop_index("ix_request_log_window", table_name="request_log")
