"""The whole policy as a document: export, and import with an optional dry run that returns
the difference without writing (the same document and rules as ``flask cors export/import``)."""

from __future__ import annotations

from flask import current_app, request

from ..services.impact import import_impact
from ..services.policy import import_policy
from ..services.policy_read import export_policy
from . import bp
from .auth import current_actor, require_writer
from .impact import impact_document
from .inputs import bool_arg, json_body


@bp.get("/export")
def export():
    return export_policy(current_actor())


@bp.post("/import")
def import_():
    actor = require_writer()
    # A policy file may be larger than other bodies; set before the body is read.
    request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]
    replace = bool_arg("replace")
    dry_run = bool_arg("dry_run")
    document = json_body()
    result = import_policy(document, actor=actor, replace=replace, dry_run=dry_run)
    if dry_run:  # what the import would take away, route by route
        impact = import_impact(document, replace=replace, actor=actor)
        return {**result.as_dict(), "impact": impact_document(impact)}
    return result.as_dict()
