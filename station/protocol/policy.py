"""Offline risk policy: the safe defaults a station ships with, and how the bank's overrides apply to them.

The bank's downlink replaces any of these values (stored in the station's ``policy`` setting); what it does not
mention keeps the default here. All amounts are fen. Pure code, shared: the station decides with
``merged_policy(overrides)``, and the sync server re-checks every entry against the very same
``merged_policy(server_policy()["station"])`` (``sync_server.policy.station_policy``), so both apply one policy.
"""

from __future__ import annotations

import copy

from station.protocol.scams import DEFAULT_SCAM_MARKERS, valid_markers
from station.protocol.tokens import is_integer

DEFAULT_POLICY: dict = {
    "limits": {
        # A rural service point's cash withdrawal: at most 1,000 yuan per card per day, minimum 10, in tens.
        "withdrawal": {"per_txn": 100_000, "daily": 100_000, "min": 1_000, "multiple": 1_000},
        # A deposit below ``min`` only farms the agent's commission (it is refused at the station and the bank).
        "deposit": {"per_txn": 5_000_000, "daily": 10_000_000, "min": 1_000},
        "transfer": {"per_txn": 2_000_000, "daily": 2_000_000},
        "bill_payment": {"per_txn": 200_000, "daily": 500_000},
        # A wealth-management order: the product's own minimum and step apply besides (``wmp_product``).
        "wmp_order": {"per_txn": 5_000_000, "daily": 5_000_000},
    },
    "fees": {"withdrawal": 0, "deposit": 0, "transfer": 200, "bill_payment": 0, "wmp_order": 0},
    "fraud_warning_fen": 500_000,
    #: A withdrawal above this (or by a proxy, 代办) records the ID card of the person present: a pension is a few
    #: hundred yuan, so the everyday withdrawal passes without it and the day's whole cap (1,000 yuan) needs it.
    "id_check_fen": 50_000,
    #: Going past the fraud warning on a transfer of at least this needs a supervisor's PIN.
    "fraud_supervisor_fen": 1_000_000,
    #: Words in a payee name or reference that show the fraud warning whatever the amount (``station.protocol.scams``).
    "scam_markers": list(DEFAULT_SCAM_MARKERS),
    #: A customer this old or older (from the birth year the bank sends) is asked to call the family at the warning.
    "elderly_age": 60,
    #: All deposits of one station in one local day: cash taken in has to come from somewhere.
    "deposit_station_daily_fen": 20_000_000,
    "max_unsynced_fen": 5_000_000,
    "max_unsynced_count": 1_000,
    "max_offline_hours": 72,
    "customer_pin_tries": 3,
    #: A day close whose variance (short or over) is beyond this needs a reason and a supervisor's PIN, and the bank
    #: refuses one without them. 10 yuan: the bank's cash reconciliation flags a variance from the same amount on
    #: (recon ``cash_variance_tolerance_fen``), so every close it would question carries its explanation, while a
    #: few jiao of coin miscounted do not call the supervisor to the counter.
    "day_close_tolerance_fen": 1_000,
    "agent_pin_tries": 5,
    "agent_idle_seconds": 600,
    "customer_auth_seconds": 300,
    "timezone": "Asia/Shanghai",
}


#: Keys whose value must pass a check before it replaces the default: a bad value keeps the default, on the
#: station and at the bank alike (both merge with this function).
_CHECKED = {
    "scam_markers": lambda value: valid_markers(value) is not None,
    "fraud_supervisor_fen": lambda value: is_integer(value) and 0 < value <= 2**53 - 1,
    "elderly_age": lambda value: is_integer(value) and 0 < value <= 150,
    # Compared with amounts (and ``int()``-ed) by the bank's re-checks: a string or null there would fail the batch.
    "fraud_warning_fen": lambda value: is_integer(value) and 0 <= value <= 2**53 - 1,
    "id_check_fen": lambda value: is_integer(value) and 0 <= value <= 2**53 - 1,
    "day_close_tolerance_fen": lambda value: is_integer(value) and 0 <= value <= 2**53 - 1,
}


def policy_problems(overrides: dict | None) -> list[str]:
    """The keys of ``overrides`` whose values ``merged_policy`` would not use (their defaults apply instead)."""
    return [key for key, check in _CHECKED.items() if key in (overrides or {}) and not check(overrides[key])]


def merged_policy(overrides: dict | None) -> dict:
    """The defaults with ``overrides`` laid over them, one level of nesting deep for ``limits``/``fees``; a
    checked key's bad value (``policy_problems``) is left out."""
    policy = copy.deepcopy(DEFAULT_POLICY)
    for key, value in (overrides or {}).items():
        if key in _CHECKED and not _CHECKED[key](value):
            continue
        if key == "limits" and isinstance(value, dict):
            for op_type, limits in value.items():
                policy["limits"].setdefault(op_type, {}).update(limits)
        elif key == "fees" and isinstance(value, dict):
            policy["fees"].update(value)
        else:
            policy[key] = value
    return policy
