"""Recon checks: completeness."""

from __future__ import annotations

from sync_server.recon.kinds import Discrepancy


def checks(context) -> list[Discrepancy]:
    """Every completeness discrepancy of the run's scope."""
    return []


def proof(context) -> list[dict]:
    """Per station in scope: what the bank holds and what the run proved of it."""
    return []
