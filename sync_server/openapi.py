"""The OpenAPI 3.1 description of ``/api/v1``; a test checks real responses against its schemas."""

from __future__ import annotations

from station.protocol import authorizations
from station.protocol.enrollment_qr import STATION_ID_PATTERN
from sync_server.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, PROBLEMS


def _problem_responses(*slugs: str) -> dict:
    """The problem+json responses of ``slugs``; every operation is rate limited (``rate-limited``, 429, with
    ``Retry-After``), may find the database out of reach (``database-unavailable``, 503, with ``Retry-After``) and
    may fail unexpectedly (``internal-error``)."""
    responses: dict = {}
    for slug in (*slugs, "rate-limited", "database-unavailable", "internal-error"):
        status = str(PROBLEMS[slug][0])
        entry = responses.setdefault(status, {"description": "", "content": {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
        if f"{PROBLEM_TYPE_PREFIX}{slug}" in entry["description"]:
            continue
        entry["description"] = (entry["description"] + " " if entry["description"] else "") + \
            f"{PROBLEM_TYPE_PREFIX}{slug}"
        if slug in ("rate-limited", "database-unavailable"):
            entry["headers"] = {"Retry-After": {"description": "seconds to wait before asking again",
                                                "required": True, "schema": {"type": "string",
                                                                             "pattern": "^[0-9]+$"}}}
    return responses


def _json(ref: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


OKP_JWK = {
    "type": "object",
    "required": ["kty", "crv", "x"],
    "properties": {"kty": {"const": "OKP"}, "crv": {"enum": ["Ed25519", "X25519"]}, "x": {"type": "string"},
                   "kid": {"type": "string"}, "use": {"type": "string"}, "alg": {"type": "string"}},
}

SCHEMAS = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "enum": [PROBLEM_TYPE_PREFIX + slug for slug in PROBLEMS]},
            "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
            "instance": {"type": "string"},
            "expected_first": {"type": "integer", "description": "gap: the seq the next batch must start at"},
            "seq": {"type": "integer", "description": "the entry the refusal is about"},
            "revoked_at": {"type": "string", "description": "station-revoked: when the bank revoked the station"},
            "server_time": {"type": "string", "description": "clock-skew: the bank's time when it refused"},
        },
    },
    "Health": {"type": "object", "required": ["status", "schema_version"],
               "properties": {"status": {"const": "ok"}, "schema_version": {"type": "integer"}}},
    "Jwk": OKP_JWK,
    "Jwks": {"type": "object", "required": ["keys"],
             "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/Jwk"}}}},
    "EnrollRequest": {
        "type": "object", "required": ["code", "signing_jwk", "encryption_jwk"],
        "properties": {"code": {"type": "string", "examples": ["K7QX-M2PD-9HWT"]},
                       "signing_jwk": {"$ref": "#/components/schemas/Jwk"},
                       "encryption_jwk": {"$ref": "#/components/schemas/Jwk"}},
    },
    "EnrollResponse": {
        "type": "object", "required": ["station_id", "name", "server", "policy", "server_time"],
        "properties": {
            "station_id": {"type": "string"}, "name": {"type": "string"},
            "server": {"type": "object", "required": ["signing_jwk", "encryption_jwk"],
                       "properties": {"signing_jwk": {"$ref": "#/components/schemas/Jwk"},
                                      "encryption_jwk": {"$ref": "#/components/schemas/Jwk"}}},
            "policy": {"type": "object"}, "server_time": {"type": "string"},
            "agent": {"type": "string", "description": "who runs the shop, when the bank knows (station add --agent)"},
            "village": {"type": "string", "description": "where the shop is, when the bank knows"},
        },
    },
    "SignedHead": {
        "type": "object", "required": ["signed_head"],
        "properties": {
            "signed_head": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                            "description": "JWS signed by the server; payload {v, typ: station-head, station, "
                                           "status, acked_seq, head, tail, server_time, nonce} (docs/protocol.md, "
                                           "Head of a station)"},
        },
    },
    "ProbeRequest": {
        "type": "object", "required": ["probe"],
        "properties": {
            "probe": {"type": "string", "maxLength": 2048,
                      "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                      "description": "JWS signed with the station's current key; payload {v: 1, typ: probe, station, "
                                     "nonce, ts} (docs/protocol.md, Link probe)"},
        },
    },
    "ProbeAnswer": {
        "type": "object", "required": ["answer"],
        "properties": {
            "answer": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                       "description": "JWS signed by the server; payload {v: 1, typ: probe-answer, station, nonce, "
                                      "server_time, status: active} (docs/protocol.md, Link probe)"},
        },
    },
    "Ack": {
        "type": "object", "required": ["ack", "downlink"],
        "properties": {
            "ack": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                    "description": "JWS signed by the server, bound to the request it answers (payload: see "
                                   "docs/protocol.md, Ack and downlink: request, downlink_version)"},
            "downlink": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                         "description": "base64url of the HPKE-sealed, zlib-compressed downlink JSON (a delta "
                                        "since the version the batch names in downlink_applied, docs/protocol.md, "
                                        "Downlink versions)"},
        },
    },
}


def openapi_document() -> dict:
    """The OpenAPI 3.1 document served at ``/api/v1/openapi.json``."""
    station_param = {"name": "station_id", "in": "path", "required": True, "schema": {
        "type": "string", "pattern": f"^{STATION_ID_PATTERN.pattern}$", "examples": ["ST-0001"]}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "station kit sync server", "version": "1.0.0",
                 "description": "Store-and-forward sync of village station journals. See docs/protocol.md."},
        "paths": {
            "/api/v1/health": {"get": {"summary": "Liveness", "responses": {
                "200": {"description": "up", "content": _json("Health")},
                **_problem_responses("internal-error")}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {
                    "type": "object"}}}}, **_problem_responses()}}},
            "/api/v1/enroll": {"post": {
                "summary": "Enroll a station with a one-time code",
                "requestBody": {"required": True, "content": _json("EnrollRequest")},
                "responses": {"200": {"description": "enrolled", "content": _json("EnrollResponse")},
                              **_problem_responses("malformed-request", "enrollment-code-invalid",
                                                   "station-revoked", "enrollment-code-used",
                                                   "enrollment-code-expired", "too-large", "internal-error")}}},
            "/api/v1/stations/{station_id}/jwks": {"get": {
                "summary": "Every public signing key a station has had (also after revocation)",
                "parameters": [station_param],
                "responses": {"200": {"description": "JWKS", "content": _json("Jwks")},
                              **_problem_responses("unknown-station", "internal-error")}}},
            "/api/v1/stations/{station_id}/head": {"get": {
                "summary": "How far the bank holds a station's journal, signed for one request",
                "parameters": [station_param, {
                    "name": "nonce", "in": "query", "required": True,
                    "description": "chosen by the caller, echoed in the signed answer",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$"}}],
                "responses": {"200": {"description": "signed head", "content": _json("SignedHead")},
                              **_problem_responses("malformed-request", "unknown-station", "internal-error")}}},
            "/api/v1/stations/{station_id}/probe": {"post": {
                "summary": "Link probe: is the bank there, and does it still deal with this station?",
                "parameters": [station_param],
                "requestBody": {"required": True, "content": _json("ProbeRequest")},
                "responses": {"200": {"description": "signed answer for the probe's nonce",
                                      "content": _json("ProbeAnswer")},
                              **_problem_responses("malformed-request", "bad-signature", "unknown-station",
                                                   "station-not-enrolled", "station-revoked", "station-flagged",
                                                   "too-large", "internal-error")}}},
            "/api/v1/stations/{station_id}/batches": {"post": {
                "summary": "Upload one sealed batch of journal entries",
                "parameters": [station_param] + [
                    {"name": "X-Station-Id", "in": "header", "required": True,
                     "schema": {"type": "string", "pattern": f"^{STATION_ID_PATTERN.pattern}$"}}] + [
                    {"name": name, "in": "header", "required": True,
                     "description": "a seq: decimal digits, at most 2^53 - 1",
                     "schema": {"type": "string", "pattern": "^[0-9]{1,16}$"}}
                    for name in ("X-Batch-First", "X-Batch-Last")] + [
                    {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
                    for name in ("X-Station-Time", "X-Sync-More")],
                "requestBody": {"required": True, "content": {"application/vnd.station-kit.batch": {
                    "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
                "responses": {"200": {"description": "applied (or already applied): signed ack",
                                      "content": _json("Ack")},
                              **_problem_responses("malformed-request", "malformed-batch", "undecryptable",
                                                   "bad-signature", "unknown-station", "station-not-enrolled",
                                                   "station-revoked", "station-flagged", "fork", "gap",
                                                   "invalid-entry", "too-large", "internal-error")}}},
            "/api/v1/stations/{station_id}/authorizations": {"post": {
                "summary": "Ask the bank in real time to authorize one operation (signed, then sealed both ways)",
                "description": "The body is the station's signed request sealed to the server's X25519 key; the "
                               "answer, a grant or a refusal with its reason, is signed by the server and sealed "
                               "to the station's key (docs/protocol.md, Real-time authorization).",
                "parameters": [station_param] + [
                    {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                    for name in (authorizations.HEADER_STATION, authorizations.HEADER_NONCE)],
                "requestBody": {"required": True, "content": {authorizations.CONTENT_TYPE: {
                    "schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
                "responses": {"200": {"description": "the bank's decision (granted or refused), sealed to the "
                                                     "station",
                                      "content": {authorizations.CONTENT_TYPE: {"schema": {
                                          "type": "string", "contentMediaType": "application/octet-stream"}}}},
                              **_problem_responses("malformed-request", "malformed-authorization", "undecryptable",
                                                   "clock-skew", "bad-signature", "unknown-station",
                                                   "station-not-enrolled", "station-revoked", "station-flagged",
                                                   "replayed", "authorization-conflict", "too-large",
                                                   "internal-error")}}},
        },
        "components": {"schemas": SCHEMAS},
    }
