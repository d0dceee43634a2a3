"""request log: placeholder until built."""

from __future__ import annotations

from . import bp
from .access import requires
from .rendering import render


@bp.get("/log")
@requires("viewer")
def request_log():
    return render("admin/placeholder.html")
