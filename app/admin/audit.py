"""audit: placeholder until built."""

from __future__ import annotations

from . import bp
from .access import requires
from .rendering import render


@bp.get("/audit")
@requires("viewer")
def audit():
    return render("admin/placeholder.html")
