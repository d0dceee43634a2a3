"""The runtime CORS engine: pure parsing and deciding, a per-process cache, Flask hooks.

This package knows nothing of the dashboard, the admin API or the CLI; they are its clients.
"""

from .cache import PolicyCache, PolicySource
from .decision import Decision, decide
from .extension import CorsControl, get_control
from .origins import OriginError, OriginKind, OriginSpec, parse_new_origin, parse_origin
from .paths import PathPattern, PatternError, parse_new_pattern, parse_pattern
from .snapshot import OriginEntry, OriginListSpec, PolicySnapshot, RuleSpec, compile_policy

__all__ = [
    "CorsControl",
    "Decision",
    "OriginEntry",
    "OriginError",
    "OriginKind",
    "OriginListSpec",
    "OriginSpec",
    "PathPattern",
    "PatternError",
    "PolicyCache",
    "PolicySnapshot",
    "PolicySource",
    "RuleSpec",
    "compile_policy",
    "decide",
    "get_control",
    "parse_new_origin",
    "parse_new_pattern",
    "parse_origin",
    "parse_pattern",
]
