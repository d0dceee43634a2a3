"""users: placeholder until built."""

from __future__ import annotations

from . import bp
from .access import requires
from .rendering import render


@bp.get("/users")
@requires("viewer")
def users():
    return render("admin/placeholder.html")
