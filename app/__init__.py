"""CORS Control: per-route CORS allowlists kept in a database and changed at runtime."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from . import security
from .config import ROOT, Config
from .cors import CorsControl
from .extensions import db, login_manager, migrate
from .heartbeat import ProcessHeartbeat
from .housekeeping import Housekeeping
from .instance import prepare_instance
from .request_log import RequestLog
from .source import create_source_engine


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: the demo API governed by the engine, health checks, the admin surface."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("INSTANCE_PATH") or str(ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(vars(Config()))
    if test_config:
        app.config.from_mapping(test_config)
    prepare_instance(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    login_manager.init_app(app)
    security.init_app(app)
    control = CorsControl(app)
    RequestLog(app, control)
    control.cache.on_check = Housekeeping(app, ProcessHeartbeat(create_source_engine(
        app.config.get("CORS_DATABASE_URL") or app.config["SQLALCHEMY_DATABASE_URI"])))

    from . import cli
    from .admin import bp as admin_bp
    from .api import URL_PREFIX as API_PREFIX
    from .api import bp as api_bp
    from .api import cli as api_cli
    from .auth import bp as auth_bp
    from .demo import bp as demo_bp
    from .health import bp as health_bp

    app.register_blueprint(demo_bp, url_prefix="/api")
    security.csrf.exempt(demo_bp)  # the demo API is called cross-origin, not by forms
    app.register_blueprint(health_bp)
    app.register_blueprint(auth_bp, url_prefix="/admin")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(api_bp, url_prefix=API_PREFIX)
    security.csrf.exempt(api_bp)  # authenticated by bearer tokens, never by the session cookie
    cli.init_app(app)
    api_cli.init_app(app)
    return app

