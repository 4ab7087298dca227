"""WSGI entry point for gunicorn: ``gunicorn sync_server.wsgi:app`` (reads DATABASE_URL, SYNC_SERVER_KEYS_DIR)."""

import gc

from sync_server import create_app

app = create_app()
# What exists now (the modules, the app, its settings) lives as long as the worker: the garbage collector need not
# walk it again at every full collection, which a batch of hundreds of entries triggers now and then (gc.freeze, as
# CPython's documentation suggests for a server's worker processes).
gc.freeze()
