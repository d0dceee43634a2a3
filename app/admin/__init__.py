"""The admin surface (dashboard to come). Never governed by the CORS engine."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("admin", __name__)


@bp.get("/")
def index():
    return render_template("admin/placeholder.html")
