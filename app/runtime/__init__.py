"""The runtime around the CORS engine: where its policy comes from, what each process does
after a policy check, and how it all stops.

* :mod:`.source`: the policy read from the database (:class:`DatabasePolicySource`);
* :mod:`.heartbeat`: each serving process reports the policy version it serves;
* :mod:`.housekeeping`: hourly, prune the request log and purge long-expired origins;
* :mod:`.wiring`: the steps :func:`app.create_app` takes, in order, and :func:`stop_runtime`.
"""

from .source import DatabasePolicySource, create_source_engine
from .wiring import (
    attach_cors,
    attach_heartbeat,
    attach_housekeeping,
    attach_request_log,
    connect_policy_database,
    get_heartbeat,
    policy_database_url,
    stop_runtime,
)

__all__ = [
    "DatabasePolicySource",
    "attach_cors",
    "attach_heartbeat",
    "attach_housekeeping",
    "attach_request_log",
    "connect_policy_database",
    "create_source_engine",
    "get_heartbeat",
    "policy_database_url",
    "stop_runtime",
]
