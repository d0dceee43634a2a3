"""The small demo policy loaded on the first start of a new installation."""

from __future__ import annotations

from .access import Actor
from .changes import policy_version
from .policy import ImportResult, import_policy

DEMO_POLICY = {
    "rules": [
        {
            "path": "/api/*",
            "origins": ["http://localhost:*", "http://127.0.0.1:8000"],
            "methods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
            "allow_headers": ["authorization", "content-type", "x-requested-with"],
            "expose_headers": ["X-Request-Id"],
            "supports_credentials": False,
            "max_age": 600,
            "mode": "enforce",
            "description": "Demo API: local front ends on any localhost port.",
        },
        {
            "path": "/api/public/*",
            "origins": ["*"],
            "methods": ["GET", "HEAD"],
            "allow_headers": [],
            "expose_headers": [],
            "max_age": 3600,
            "mode": "enforce",
            "description": "Public, cookie-less data any site may read.",
        },
    ]
}


def load_demo_policy_once() -> ImportResult | None:
    """Load the demo policy into a database whose policy was never changed."""
    if policy_version() != 0:
        return None
    return import_policy(DEMO_POLICY, actor=Actor("demo", "cli"))
