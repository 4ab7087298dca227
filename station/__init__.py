"""The village service station: the offline banking core, its touchscreen UI and its wire formats.

Importing the package loads nothing: the Flask app factory is ``station.app.create_app``, and
``station.protocol`` stays importable without Flask or peewee (the sync server imports only that).
"""
