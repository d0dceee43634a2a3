"""WSGI apps for gunicorn, one per variant of the throughput figures: the same view with no
CORS, under flask-cors and under the engine, allowing the same 3 origins, and under the engine
allowing 1,000,000 (the first 3 among them). gunicorn builds the one it serves through the
factory: ``bench.served:build('engine_1m')``; no process builds the others."""

from __future__ import annotations

from flask import Flask

from . import apps

ORIGINS = apps.allowed_origins(3)
LARGE = 1_000_000
VARIANTS = ("bare", "flask_cors", "engine", "engine_1m")


def build(variant: str) -> Flask:
    if variant == "bare":
        return apps.bare_app()
    if variant == "flask_cors":
        return apps.flask_cors_app(ORIGINS)
    if variant == "engine":
        return apps.engine_app(ORIGINS)[0]
    if variant == "engine_1m":
        # Generated, not held as entries: the worker keeps only the compiled snapshot.
        return apps.engine_app(apps.GeneratedSource(LARGE))[0]
    raise ValueError(f"no variant {variant!r}; choose from {', '.join(VARIANTS)}")
