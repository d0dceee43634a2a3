"""rules: placeholder until built."""

from __future__ import annotations

from . import bp
from .access import requires
from .rendering import render


@bp.get("/rules")
@requires("viewer")
def rules():
    return render("admin/placeholder.html")


@bp.get("/coverage")
@requires("viewer")
def coverage():
    return render("admin/placeholder.html")
