"""CORS Control: per-route CORS allowlists kept in a database and changed at runtime."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import runtime, security
from .config import Config, default_instance_path, resource_dir
from .extensions import db, login_manager, migrate
from .instance import prepare_instance

__all__ = ["close_app", "create_app"]


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: the demo API governed by the engine, health checks, the admin surface."""
    app = Flask(
        __name__,
        instance_path=default_instance_path(),
        template_folder=str(resource_dir("templates")),
        static_folder=str(resource_dir("static")),
    )
    app.config.from_mapping(vars(Config()))
    if test_config:
        app.config.from_mapping(test_config)
    prepare_instance(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(resource_dir("migrations")))
    login_manager.init_app(app)
    security.init_app(app)
    policy_database = runtime.connect_policy_database(app)
    control = runtime.attach_cors(app, policy_database)
    runtime.attach_request_log(app, control, policy_database)
    runtime.attach_heartbeat(app, control, policy_database)
    runtime.attach_housekeeping(app, control)
    runtime.attach_listener(app, control)
    runtime.attach_alerts(app, control)
    runtime.attach_publication(app, control)

    from . import cli, errors
    from .admin import bp as admin_bp
    from .api import URL_PREFIX as API_PREFIX
    from .api import bp as api_bp
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
    errors.init_app(app)  # the admin surface answers 503 while the database is down
    if app.config["TRUSTED_PROXIES"]:
        proxies = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]  # Flask's documented way
    return app


def close_app(app: Flask, *, flush_log: bool = True) -> None:
    """Stop and release everything :func:`create_app` started: the policy poller, the request
    log (writing what is pending first unless *flush_log* is false), the runtime's engine and
    the app's own connection pool. For tests, benchmarks and embedding; a server process
    simply exits (the request log still writes what is pending at exit)."""
    runtime.stop_runtime(app, flush_log=flush_log)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()

