"""The sync server's HTTP API under ``/api/v1`` (docs/protocol.md; OpenAPI at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, current_app, jsonify, request

from station.protocol import authorizations, heads
from station.protocol.enrollment_qr import STATION_ID_PATTERN
from station.protocol.times import utc_text
from station.protocol.tokens import verification_jwk
from sync_server import service
from sync_server.authorize import authorize
from sync_server.db import Station, StationTail, db_proxy, schema_version
from sync_server.lifecycle import station_keys
from sync_server.openapi import openapi_document
from sync_server.probe import answer_probe
from sync_server.problems import Problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.url_value_preprocessor
def _no_such_station_id(endpoint, values):
    """A station id no station can have (``sync-server station add`` takes only ``STATION_ID_PATTERN``) is an
    unknown station before the database is asked: PostgreSQL refuses a NUL in text with an error (a 500)."""
    station_id = (values or {}).get("station_id")
    if station_id is not None and not STATION_ID_PATTERN.fullmatch(station_id):
        raise Problem("unknown-station", f"The bank knows no station {station_id!r}: a station id is 1 to 40 letters, "
                                         "digits, '-' or '_'.")


def _keys():
    return current_app.extensions["server_keys"]


@bp.get("/health")
def health():
    """Liveness and the schema version the database is at."""
    return jsonify(status="ok", schema_version=schema_version(db_proxy.obj))


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_document())


def json_body():
    """The request's JSON body, or None when it is not JSON. JSON nested too deep for the parser (a RecursionError,
    which ``silent`` does not catch) is a malformed request, not a 500."""
    try:
        return request.get_json(silent=True)
    except RecursionError as exc:
        raise Problem("malformed-request", "The JSON body is nested too deeply.") from exc


@bp.post("/enroll")
def enroll():
    """A station enrolls with a one-time code and its public keys."""
    return jsonify(service.enroll(_keys(), json_body()))


@bp.get("/stations/<station_id>/jwks")
def station_jwks(station_id):
    """Every public signing key the station has had (old ones too), to verify its receipts, also after it is
    revoked."""
    keys = station_keys(station_id)
    if not keys:
        raise Problem("unknown-station", f"The bank knows no enrolled station {station_id}.")
    # Published without ``alg`` also for stations enrolled when the key carried one, so both names verify.
    return jsonify(keys=[verification_jwk(key.jwk) for key in keys])


@bp.post("/stations/<station_id>/batches")
def post_batch(station_id):
    """Ingest one sealed batch (``application/vnd.station-kit.batch``); answer with the signed ack."""
    body = request.get_data(cache=False)
    return jsonify(service.ingest(_keys(), station_id, request.headers, body))


@bp.post("/stations/<station_id>/authorizations")
def post_authorization(station_id):
    """Answer a sealed real-time authorization request (``application/vnd.station-kit.authorization``) with the
    bank's signed decision, sealed to the station (docs/protocol.md, "Real-time authorization")."""
    body = request.get_data(cache=False)
    answer = authorize(_keys(), station_id, request.headers, body)
    return current_app.response_class(answer.body, mimetype=authorizations.CONTENT_TYPE)


@bp.post("/stations/<station_id>/probe")
def probe(station_id):
    """The link probe: ``{"probe": JWS}`` signed with the station's current key, answered ``{"answer": JWS}``
    signed with the server's key for the probe's nonce (``sync_server.probe``)."""
    return jsonify(answer_probe(_keys(), station_id, json_body()))


@bp.get("/stations/<station_id>/head")
def station_head(station_id):
    """How far the bank holds the station's journal, signed by the server for this request's ``nonce``.

    ``station restore`` asks before putting a backup back on a device: a backup older than this head would fork.
    """
    nonce = request.args.get("nonce", "")
    if not heads.NONCE_RE.fullmatch(nonce):
        raise Problem("malformed-request", "Send ?nonce= with 16 to 128 characters of base64url (A-Z a-z 0-9 - _).")
    station = Station.get_or_none(Station.station_id == station_id)
    if station is None:
        raise Problem("unknown-station", f"The bank knows no station {station_id}.")
    tail = StationTail.get_or_none(StationTail.station_id == station_id)
    token = heads.make_signed_head(
        _keys().signer, station_id=station_id, status=station.status, acked_seq=station.acked_seq,
        head=station.head if station.acked_seq else None, tail=None if tail is None else (tail.seq, tail.head),
        server_time=utc_text(datetime.now(UTC)), nonce=nonce, kid=station.kid)
    return jsonify(signed_head=token)
