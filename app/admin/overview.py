"""Overview: rules, origins and processes at a glance."""

from __future__ import annotations

from . import bp
from .access import requires
from .rendering import render


@bp.get("/")
@requires("viewer")
def overview():
    return render("admin/overview.html")
