"""What the station and the sync server share: the registry of entry types, money, PIN verifiers, receipt tokens and
journal checks, the sync envelope (key codecs, sealing, compact codec, batches, acks), times, demo data.

Pure code: nothing here imports Flask or peewee, so ``sync_server`` can import this package
without pulling in the station's UI or database.
"""
