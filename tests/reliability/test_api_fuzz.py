"""Schemathesis over every operation of the sync server's OpenAPI document (``/api/v1/openapi.json``), in process
through WSGI: requests that fit the document and requests that break it (negative mode), for a station the bank has
never heard of, an enrolled one and one not enrolled yet. Every answer must not be a server error and must match
the document: its status is documented, its content type and body match the documented schema, its documented
headers are there. SQLite by default, PostgreSQL too with ``TEST_DATABASE_URL`` (the ``server`` fixture).

Figures: ``{"fault": "api fuzz", "cases": N, "server_errors": 0}`` in ``$RELIABILITY_REPORT_DIR/test_api_fuzz.json``.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sync_support import enrolled_station

from station.protocol.authorizations import CONTENT_TYPE as AUTHORIZATION_TYPE
from station.protocol.envelope import BATCH_CONTENT_TYPE
from sync_server import create_app
from sync_server.openapi import openapi_document

from .fuzz_support import fuzz_settings, write_report

pytestmark = pytest.mark.reliability

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
OPERATIONS = [(method.upper(), path) for path, methods in openapi_document()["paths"].items() for method in methods]


def modes(method: str, path: str) -> list[GenerationMode]:
    """Valid requests, and for an operation that takes any input, invalid ones too."""
    described = openapi_document()["paths"][path][method.lower()]
    takes_input = "parameters" in described or "requestBody" in described
    return [GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if takes_input else [])]
#: A station the bank never heard of is what a fuzzer names by itself; these are the bank's own.
KNOWN_STATIONS = ["ST-0001", "ST-0002"]

figures = {"fault": "api fuzz", "cases": 0, "server_errors": 0}


@schemathesis.serializer(BATCH_CONTENT_TYPE, AUTHORIZATION_TYPE)
def sealed_body(context, value):
    """The sealed bodies travel as they are: bytes, or text as UTF-8."""
    return {"data": value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")}


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    write_report(__name__, figures)


@pytest.fixture
def bank(server, tmp_path, clock):
    """The bank's API app (rate limits off: they have tests of their own) with ST-0001 enrolled and ST-0002 not."""
    enrolled_station(server, tmp_path, "ST-0001", clock)
    return create_app({"DATABASE_URL": server.database_url, "SYNC_SERVER_KEYS_DIR": str(server.keys_dir),
                       "SYNC_SERVER_RATE_LIMITS": "off"})


def cases(operation, mode):
    """Cases for ``operation`` in ``mode``; where its path names a station, also the bank's own stations."""
    strategy = operation.as_strategy(generation_mode=mode)
    if "{station_id}" not in operation.path:
        return strategy
    known = st.sampled_from(KNOWN_STATIONS).flatmap(
        lambda station_id: operation.as_strategy(generation_mode=mode, path_parameters={"station_id": station_id}))
    return st.one_of(strategy, known)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_is_documented_and_none_is_a_server_error(bank, method, path):
    schema = schemathesis.openapi.from_dict(openapi_document())
    operation = schema[path][method]
    for mode in modes(method, path):

        @fuzz_settings(quick=15, full=300)
        @given(case=cases(operation, mode))
        def fuzz(case):
            response = case.call(app=bank)
            figures["cases"] += 1
            figures["server_errors"] += response.status_code >= 500
            case.validate_response(response, checks=CHECKS)

        fuzz()
