"""CORS Control: per-route CORS allowlists kept in a database and changed at runtime."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import security
from .config import ROOT, Config, default_database_url
from .cors import CorsControl
from .extensions import db, login_manager, migrate
from .heartbeat import ProcessHeartbeat
from .housekeeping import Housekeeping
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
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = default_database_url(app.instance_path)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _local_secret_key(Path(app.instance_path))

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
    if app.config["TRUSTED_PROXIES"]:
        proxies = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore
    return app


def _local_secret_key(instance: Path) -> str:
    """Without SECRET_KEY in the environment, a random key kept in instance/ (never committed),
    so sessions survive a restart of ``make run``."""
    path = instance / "secret-key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key
