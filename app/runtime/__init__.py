"""The runtime around the CORS engine: where its policy comes from, what each process does
after a policy check, and how it all stops.

* :mod:`.source`: the policy read from the database (:class:`DatabasePolicySource`);
* :mod:`.heartbeat`: each serving process reports the policy version it serves;
* :mod:`.listener`: on PostgreSQL, changes pushed with NOTIFY and reloaded at once;
* :mod:`.housekeeping`: hourly, prune the request log and purge long-expired origins;
* :mod:`.publication`: the policy served to data planes (control-plane mode);
* :mod:`.alerts`: compute alerts from the request log and send them to webhooks;
* :mod:`.wiring`: the steps :func:`app.create_app` takes, in order, and :func:`stop_runtime`.
"""

from .source import DatabasePolicySource, create_source_engine
from .wiring import (
    attach_alerts,
    attach_cors,
    attach_heartbeat,
    attach_housekeeping,
    attach_listener,
    attach_publication,
    attach_request_log,
    connect_policy_database,
    get_alert_job,
    get_heartbeat,
    get_listener,
    get_publication,
    policy_database_url,
    stop_runtime,
)

__all__ = [
    "DatabasePolicySource",
    "attach_alerts",
    "attach_cors",
    "attach_heartbeat",
    "attach_housekeeping",
    "attach_listener",
    "attach_publication",
    "attach_request_log",
    "connect_policy_database",
    "get_alert_job",
    "create_source_engine",
    "get_listener",
    "get_publication",
    "get_heartbeat",
    "policy_database_url",
    "stop_runtime",
]
