"""Database mode: the policy read from the admin application's database, changes pushed by
PostgreSQL, refusals written to its request log.

Needs the ``database`` extra (``pip install 'cors-control[database]'``: SQLAlchemy and
psycopg). ``CorsControl(app, database_url=...)`` wires it all; the admin application uses the
pieces one by one.
"""

from .heartbeat import ProcessHeartbeat
from .listener import DEFAULT_CHANNEL, PolicyListener
from .log_sink import DatabaseRefusalSink
from .runtime import DatabaseRuntime
from .source import DatabasePolicySource, create_source_engine

__all__ = [
    "DEFAULT_CHANNEL",
    "DatabasePolicySource",
    "DatabaseRefusalSink",
    "DatabaseRuntime",
    "PolicyListener",
    "ProcessHeartbeat",
    "create_source_engine",
]
