"""The server policy: what the bank sets for every station (offline allowance, agent commission, transfer delays,
and overrides of the stations' own policy).

Invariant: every reader gets a complete policy, the stored overrides (``ServerSetting`` ``policy``) laid over
``DEFAULT_SERVER_POLICY``, so a key the bank never set has its default (``commission`` is merged per operation
type). Enforced by ``server_policy``, the one reader of the stored row.
"""

from __future__ import annotations

from sync_server.db import ServerSetting

DEFAULT_SERVER_POLICY: dict = {
    #: What each station a customer calls home may pay out offline: about one day's withdrawal cap.
    "offline_allowance_fen": 100_000,
    #: Agent commission per operation type (fen), paid to the station's agent.
    "commission": {"withdrawal": 100, "deposit": 50, "transfer": 100, "bill_payment": 50},
    "transfer_delay_seconds": 0,
    #: Transfers at or above this wait ``risky_transfer_delay_seconds`` before the bank executes them.
    "risky_transfer_fen": 500_000,
    "risky_transfer_delay_seconds": 3600,
    #: Overrides of the station's own policy, sent down in every downlink (see station/protocol/policy.py).
    "station": {},
}



def server_policy() -> dict:
    """The server policy: stored overrides laid over ``DEFAULT_SERVER_POLICY``."""
    row = ServerSetting.get_or_none(ServerSetting.key == "policy")
    policy = {**DEFAULT_SERVER_POLICY, **(row.value if row else {})}
    policy["commission"] = {**DEFAULT_SERVER_POLICY["commission"], **policy.get("commission", {})}
    return policy
