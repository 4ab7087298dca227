"""Recon checks: billers."""

from __future__ import annotations

from sync_server.recon.kinds import Discrepancy


def checks(context) -> list[Discrepancy]:
    """Every billers discrepancy of the run's scope."""
    return []


def awaiting(context) -> list[dict]:
    """Per biller and value date: settled payments that no imported settlement file covers yet."""
    return []
