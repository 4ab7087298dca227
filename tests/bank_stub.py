"""A stand-in for the bank's real-time authorization endpoint, for the station's tests of online operations.

It speaks the contract of ``station.protocol.authorizations`` with its own test keys: it opens and verifies the
station's sealed request, asks the test's ``decide`` what to answer, and seals the signed answer back. Like the
bank it answers the same txn with the same fields with the same auth_id and expiry. Anything else (batches) gets a
503, so a push after an operation fails and the entry stays in the outbox. ``attach(st)`` pins its keys in a
station's config and gives the station an encryption key.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sync_support import serve_in_thread, stop_server

from station.context import Station
from station.protocol import key_codecs
from station.protocol.authorizations import CONTENT_TYPE, answer_payload, open_request, seal_answer, verify_request
from station.protocol.private_files import write_private_file
from station.protocol.times import utc_text
from station.protocol.tokens import Signer, generate_signing_key, public_jwk
from station.sync import ENCRYPTION_KEY_FILE


class StubBank:
    """``decide(request) -> dict`` gives ``granted`` (default True), ``reason``, ``balance``, ``acked_seq``,
    ``execute_after``; ``hold`` (an Event) keeps every answer back until set; ``tamper`` signs with another key."""

    def __init__(self, clock):
        self.clock = clock
        self.signer = Signer(generate_signing_key())
        self.encryption_key = key_codecs.generate_encryption_key()
        self.decide = lambda request: {}
        self.hold: threading.Event | None = None
        self.tamper = False
        self.requests: list[dict] = []
        self.grants: dict[str, tuple[tuple, str, str]] = {}
        self.station_jwk: dict | None = None
        self.station_encryption = None
        self.url = ""

    def attach(self, st: Station) -> None:
        """Enroll ``st`` with this bank: its keys pinned in config.json, an encryption key for the station."""
        station_key = key_codecs.generate_encryption_key()
        write_private_file(st.data_dir / ENCRYPTION_KEY_FILE, key_codecs.encryption_private_to_text(station_key))
        self.station_encryption = station_key.public_key()
        self.station_jwk = public_jwk(st.signing_key)
        st.update_config("server", {"url": self.url, "signing_jwk": public_jwk(self.signer.key),
                                    "encryption_jwk": key_codecs.encryption_public_jwk(self.encryption_key)})

    def answer(self, request: dict) -> dict:
        decision = {"granted": True, "balance": None, "acked_seq": None, "execute_after": None,
                    **self.decide(request)}
        now = self.clock()
        granted = decision["granted"]
        auth_id = expires_at = None
        if granted:
            fields = tuple(request[name] for name in ("kind", "account", "amount", "fee"))
            known = self.grants.get(request["txn"])
            if known is not None and known[0] != fields:
                granted, decision["reason"] = False, "over_transaction_limit"
            else:
                if known is None:
                    known = (fields, f"AUTH-{len(self.grants) + 1:04d}", utc_text(now + timedelta(minutes=2)))
                    self.grants[request["txn"]] = known
                _, auth_id, expires_at = known
        return answer_payload(request, granted=granted, reason=None if granted else decision.get("reason"),
                              auth_id=auth_id, expires_at=expires_at, server_time=utc_text(now),
                              balance=decision["balance"], acked_seq=decision["acked_seq"],
                              execute_after=decision["execute_after"])

    def __call__(self, environ, start_response):
        if not environ["PATH_INFO"].endswith("/authorizations"):
            start_response("503 Service Unavailable", [("Content-Type", "application/problem+json")])
            return [b'{"type": "urn:station-kit:problem:internal-error", "title": "Busy"}']
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        station_id, nonce = environ["HTTP_X_STATION_ID"], environ["HTTP_X_AUTHORIZATION_NONCE"]
        token, _ = open_request(body, station_id=station_id, nonce=nonce, server_encryption_key=self.encryption_key)
        request = verify_request(token, self.station_jwk)
        self.requests.append(request)
        if self.hold is not None:
            self.hold.wait(timeout=30)
        signer = Signer(generate_signing_key()) if self.tamper else self.signer
        sealed = seal_answer(self.answer(request), signer, self.station_encryption)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
        return [sealed]


class running:
    """``with running(StubBank(clock)) as bank:`` serves it on loopback (``bank.url``) until the block ends."""

    def __init__(self, bank: StubBank):
        self.bank = bank

    def __enter__(self) -> StubBank:
        self.bank.url, self._server, self._thread = serve_in_thread(self.bank, threads=2)
        return self.bank

    def __exit__(self, *exc_info):
        if self.bank.hold is not None:
            self.bank.hold.set()
        stop_server(self._server, self._thread)
