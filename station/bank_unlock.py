"""The bank's one-time unlock code, typed on the station's screen: unlocks an agent with no network at all.

The bank's staff run ``sync-server agents unlock-code STATION AGENT`` and read the 8 digits out over the phone;
the station derives the same code from its own encryption key and the server's public one
(``station.protocol.unlock_codes``). A code works once: the station keeps the highest counter it accepted
(setting ``unlock_code_counter``) and takes only codes above it. Wrong codes are counted; from the
``FREE_CODE_TRIES``-th in a row on, the code screen waits before the next (the same growing waits as the last
supervisor's, on the boot clock), so codes cannot be guessed by trying: with ``LOOK_AHEAD`` counters tried, one
guess in 20 million hits.
"""

from __future__ import annotations

import logging
import unicodedata

from station import errors
from station.agents import (
    counted_if_unsaved,
    record_unlock,
    refuse_past_unsaved_limit,
    seconds_left,
    start_wait,
    waiting_error,
)
from station.context import Station, bound_station
from station.protocol import key_codecs
from station.protocol.unlock_codes import matching_counter, unlock_key
from station.receipts import Receipt
from station.sync import ENCRYPTION_KEY_FILE

log = logging.getLogger(__name__)

#: Wrong codes in a row before the code screen starts to wait.
FREE_CODE_TRIES = 3
COUNTER_SETTING = "unlock_code_counter"
FAILURES_SETTING = "unlock_code_failures"
WAIT_SETTING = "unlock_code_wait"


def code_key(st: Station, agent_id: str) -> bytes:
    """The HOTP key of ``agent_id``'s unlock codes at this station; ``UnlockCodesUnavailable`` on a station that
    has no encryption key or server key (not enrolled)."""
    server = st.config.get("server") or {}
    path = st.data_dir / ENCRYPTION_KEY_FILE
    try:
        private_key = key_codecs.encryption_private_from_text(path.read_text(encoding="utf-8"))
        server_key = key_codecs.encryption_public_from_jwk(server.get("encryption_jwk") or {})
        return unlock_key(private_key, server_key, st.station_id, agent_id)
    except (OSError, ValueError) as exc:
        raise errors.UnlockCodesUnavailable() from exc


def code_wait(st: Station) -> int:
    """Seconds before the code screen takes another code (0: now)."""
    return seconds_left(st, WAIT_SETTING)


@bound_station
def unlock_with_code(st: Station, agent_id: str, code: str) -> Receipt:
    """Unlock ``agent_id`` with the bank's one-time code (journaled as ``by`` bank_code with the code's counter).

    ``UnlockCodesWaiting`` after too many wrong codes, ``UnlockCodeWrong`` for a code that does not match (counted),
    ``AgentNotLocked``, ``AgentUnknown``, ``UnlockCodesUnavailable``."""
    if seconds := code_wait(st):
        raise waiting_error(st, errors.UnlockCodesWaiting, seconds)
    refuse_past_unsaved_limit(st, FAILURES_SETTING, int(st.setting(FAILURES_SETTING, 0)), FREE_CODE_TRIES)
    key = code_key(st, agent_id)
    code = "".join(unicodedata.normalize("NFKC", str(code or "")).split())
    with counted_if_unsaved(st, FAILURES_SETTING) as unsaved, st.write():
        if seconds := code_wait(st):
            raise waiting_error(st, errors.UnlockCodesWaiting, seconds)
        counter = matching_counter(key, code, int(st.setting(COUNTER_SETTING, 0)))
        if counter is not None:
            receipt = record_unlock(st, agent_id, "bank_code", code_counter=counter)
            st.set_setting(COUNTER_SETTING, counter)
            st.delete_setting(FAILURES_SETTING)
            st.delete_setting(WAIT_SETTING)
            return receipt
        failures = int(st.setting(FAILURES_SETTING, 0)) + unsaved + 1
        st.set_setting(FAILURES_SETTING, failures)
        if failures >= FREE_CODE_TRIES:
            start_wait(st, WAIT_SETTING, failures - FREE_CODE_TRIES)
    log.warning("wrong unlock code for agent %s (%d in a row)", agent_id, failures)
    raise errors.UnlockCodeWrong()
