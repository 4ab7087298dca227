"""The server policy: what the bank sets for every station (offline allowance, agent commission, transfer delays,
and overrides of the stations' own policy).

Invariant: every reader gets a complete policy, the stored overrides (``ServerSetting`` ``policy``) laid over
``DEFAULT_SERVER_POLICY``, so a key the bank never set has its default (``commission`` and
``commission_min_amount_fen`` are merged per operation type). Enforced by ``server_policy``, the one reader of the
stored row. The stations' policy as they apply it, which the bank re-checks every entry against, is
``station_policy``.
"""

from __future__ import annotations

from station.protocol.policy import merged_policy
from sync_server.db import ServerSetting, arg, cached_row

DEFAULT_SERVER_POLICY: dict = {
    #: What each station a customer calls home may pay out offline: about one day's withdrawal cap.
    "offline_allowance_fen": 100_000,
    #: Agent commission per operation type (fen), paid to the station's agent.
    "commission": {"withdrawal": 100, "deposit": 50, "transfer": 100, "bill_payment": 50},
    #: Per operation type: an operation of less than this earns no commission (nor does a zero amount).
    "commission_min_amount_fen": {"withdrawal": 10_000, "deposit": 10_000, "transfer": 10_000, "bill_payment": 1_000},
    #: The most commission one agent earns at one station in one local day; operations past it still settle.
    "commission_daily_cap_fen": 5_000,
    "transfer_delay_seconds": 0,
    #: Transfers at or above this wait ``risky_transfer_delay_seconds`` before the bank executes them.
    "risky_transfer_fen": 500_000,
    "risky_transfer_delay_seconds": 3600,
    #: How long a real-time authorization's hold lasts when no entry consumes it (``sync_server.authorize``).
    "authorization_ttl_seconds": 300,
    #: A station whose current signing key is older than this many days is told to rotate it in its downlink
    #: (``rotate_key``); 0: keys never age out. ``sync-server station rotate-key --max-age-days N`` sets it.
    "max_key_age_days": 365,
    #: Overrides of the station's own policy, sent down in every downlink (see station/protocol/policy.py).
    "station": {},
}



def server_policy() -> dict:
    """The server policy: stored overrides laid over ``DEFAULT_SERVER_POLICY``."""
    row = cached_row("server setting", lambda: ServerSetting.select().where(ServerSetting.key == arg()).limit(1),
                     "policy")
    policy = {**DEFAULT_SERVER_POLICY, **(row.value if row else {})}
    for key in ("commission", "commission_min_amount_fen"):
        policy[key] = {**DEFAULT_SERVER_POLICY[key], **policy.get(key, {})}
    return policy


#: A station clock further than this from the bank's, as the bank measured it at the station's last sync, is flagged
#: (``sync-server station list`` and ``show``; recon's ``clock_offset``). The server policy's
#: ``recon.clock_offset_max_ms`` overrides it.
CLOCK_OFFSET_MAX_MS = 5 * 60 * 1000


def clock_offset_limit_ms(policy: dict) -> int:
    """The clock offset (ms, either way) beyond which a station's clock is flagged (``CLOCK_OFFSET_MAX_MS``)."""
    return int((policy.get("recon") or {}).get("clock_offset_max_ms", CLOCK_OFFSET_MAX_MS))


def clock_offset_flagged(offset_ms: int | None, policy: dict) -> bool:
    """True when the measured offset is beyond ``clock_offset_limit_ms``; False when none was measured yet."""
    return offset_ms is not None and abs(offset_ms) > clock_offset_limit_ms(policy)


def station_policy(policy: dict) -> dict:
    """The policy every station applies offline, exactly as it applies it: the stations' defaults with the
    overrides ``policy["station"]`` that the downlink sends laid over them."""
    return merged_policy(policy.get("station"))
