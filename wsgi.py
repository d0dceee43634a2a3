"""The WSGI entry point: ``gunicorn wsgi:app``; ``flask`` finds it without flags."""

from app import create_app

app = create_app()
