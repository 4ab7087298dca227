"""``canonical_json`` is RFC 8785 (JSON Canonicalization Scheme) over the JSON the kit signs: objects, arrays,
strings (any Unicode scalar value: control characters, non-ASCII, beyond the BMP, also in keys), integers within
+-(2**53 - 1), booleans and null. No floats: amounts are integer fen."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from station.protocol import tokens
from station.protocol.tokens import canonical_json

SAFE_INTEGER = 2**53 - 1
#: Control characters, ASCII, Latin-1, the BMP's private use and half-width forms, and beyond the BMP (emoji):
#: the ranges where UTF-16 and code-point order disagree and where JCS escapes.
TEXT = st.text(st.one_of(st.characters(codec="utf-8", max_codepoint=0x7F),
                         st.characters(codec="utf-8", min_codepoint=0xE000, max_codepoint=0xFFFF),
                         st.characters(codec="utf-8", min_codepoint=0x10000), st.characters(codec="utf-8")),
               max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-SAFE_INTEGER, SAFE_INTEGER), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=5),
                    max_leaves=20)


@given(JSON)
def test_canonical_json_is_rfc8785(value):
    assert canonical_json(value) == rfc8785.dumps(value)


def test_keys_sort_by_utf16_code_units_as_rfc8785_says():
    # U+FF61 sorts before U+1F600 in UTF-16 (0xFF61 < 0xD83D), after it by code point.
    value = {"\U0001f600": 1, "\uff61": 2, "a": 3}
    assert canonical_json(value) == rfc8785.dumps(value) == '{"a":3,"\U0001f600":1,"｡":2}'.encode()
    assert sorted(value) != sorted(value, key=lambda key: key.encode("utf-16-be"))


ASCII_TEXT = st.text(st.characters(codec="ascii"), max_size=12)
ASCII_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-SAFE_INTEGER, SAFE_INTEGER), ASCII_TEXT),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ASCII_TEXT, inner, max_size=5),
                          max_leaves=20)


@given(ASCII_JSON)
def test_ascii_json_takes_the_fast_path_and_is_rfc8785(value):
    assert canonical_json(value) == rfc8785.dumps(value)


@given(st.recursive(st.one_of(SCALARS, st.floats()), lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=5), max_leaves=20))
def test_the_c_encoder_made_directly_writes_what_json_encoder_encode_writes(value):
    assert tokens._encode_canonical(value) == tokens._CANONICAL_ENCODER.encode(value)


def test_the_c_encoder_made_directly_refuses_what_json_encoder_encode_refuses():
    cycle: list = []
    cycle.append(cycle)
    for value, error in ((cycle, ValueError), ({"a": {1, 2}}, TypeError), ({("a",): 1}, TypeError)):
        with pytest.raises(error) as expected:
            tokens._CANONICAL_ENCODER.encode(value)
        with pytest.raises(error) as got:
            tokens._encode_canonical(value)
        assert str(got.value) == str(expected.value)
