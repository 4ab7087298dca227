"""Wire formats shared by the station and the sync server: money, PIN verifiers, receipt tokens.

Pure code: nothing here imports Flask or peewee, so ``sync_server`` can import this package
without pulling in the station's UI or database.
"""
