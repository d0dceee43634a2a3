"""simulator: placeholder until built."""

from __future__ import annotations

from . import bp
from .access import requires
from .rendering import render


@bp.get("/simulator")
@requires("viewer")
def simulator():
    return render("admin/placeholder.html")
