"""The sync server's HTTP API under ``/api/v1`` (docs/protocol.md; OpenAPI at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from station.protocol.tokens import verification_jwk
from sync_server import service
from sync_server.db import db_proxy, schema_version
from sync_server.lifecycle import station_keys
from sync_server.openapi import openapi_document
from sync_server.problems import Problem

bp = Blueprint("api", __name__, url_prefix="/api/v1")


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


@bp.post("/enroll")
def enroll():
    """A station enrolls with a one-time code and its public keys."""
    body = request.get_json(silent=True)
    return jsonify(service.enroll(_keys(), body))


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
