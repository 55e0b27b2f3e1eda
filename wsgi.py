"""WSGI entry point: `gunicorn wsgi:app`."""

from suppress import create_app

app = create_app()
