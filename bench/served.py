"""WSGI apps for gunicorn, one per variant of the throughput figures (``bench.served:bare``,
``bench.served:flask_cors``, ``bench.served:engine``): the same view, with no CORS, under
flask-cors, and under the engine, each allowing the same 3 origins."""

from __future__ import annotations

from . import apps

ORIGINS = apps.allowed_origins(3)

bare = apps.bare_app()
flask_cors = apps.flask_cors_app(ORIGINS)
engine, _control = apps.engine_app(ORIGINS)
