"""The runtime around the CORS engine: where its policy comes from, what each process does
after a policy check, and how it all stops.

The policy read from the database, the heartbeat of each serving process and the listener for
changes pushed by PostgreSQL are the engine's (:mod:`cors_control.database`); this package wires
them into the admin app and adds what only the admin app runs:

* :mod:`.housekeeping`: hourly, prune the request log and purge long-expired origins;
* :mod:`.publication`: the policy served to data planes (control-plane mode);
* :mod:`.alerts`: compute alerts from the request log and send them to webhooks;
* :mod:`.wiring`: the steps :func:`app.create_app` takes, in order, and :func:`stop_runtime`.
"""

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
    "attach_alerts",
    "attach_cors",
    "attach_heartbeat",
    "attach_housekeeping",
    "attach_listener",
    "attach_publication",
    "attach_request_log",
    "connect_policy_database",
    "get_alert_job",
    "get_listener",
    "get_publication",
    "get_heartbeat",
    "policy_database_url",
    "stop_runtime",
]
