"""The words a rule is written in: its modes, tenant sources and unknown-tenant options.

Each vocabulary is defined here once. The engine decides with these words; the models build
their CHECK constraints from them, and validation, the API schema and the dashboard list them
from here. The reason codes of a decision live with :func:`.decision.decide`, which gives them.
"""

from __future__ import annotations

# A rule's mode: enforce its allowlist, only report what it would refuse, or stand aside.
ENFORCE = "enforce"
REPORT_ONLY = "report-only"
OFF = "off"
MODES = (ENFORCE, REPORT_ONLY, OFF)
# The modes of the rules the engine applies (a rule in mode off is left out of the snapshot),
# and so the modes a request log row is recorded under.
APPLIED_MODES = (ENFORCE, REPORT_ONLY)
# The mode a request log row is recorded under when an enforced rule's draft would have
# refused a request the live rule allows; never a rule's own mode.
DRAFT = "draft"
LOG_MODES = (*APPLIED_MODES, DRAFT)

# Where a tenant-selecting rule finds the tenant of a request; "none": the rule selects none.
NO_TENANT_SOURCE = "none"
TENANT_FROM_VIEW_ARG = "view-arg"
TENANT_FROM_SUBDOMAIN = "subdomain"
TENANT_FROM_HEADER = "header"
TENANT_SOURCES = (NO_TENANT_SOURCE, TENANT_FROM_VIEW_ARG, TENANT_FROM_SUBDOMAIN,
                  TENANT_FROM_HEADER)

# What a tenant-selecting rule does for a tenant nobody configured: refuse its requests, or
# answer them from the rule's shared allowlist.
REFUSE_UNKNOWN_TENANT = "refuse"
SHARED_FOR_UNKNOWN_TENANT = "shared"
UNKNOWN_TENANT_OPTIONS = (REFUSE_UNKNOWN_TENANT, SHARED_FOR_UNKNOWN_TENANT)
