"""WSGI entry point for gunicorn: ``gunicorn sync_server.wsgi:app`` (reads DATABASE_URL, SYNC_SERVER_KEYS_DIR)."""

from sync_server import create_app

app = create_app()
