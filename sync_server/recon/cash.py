"""Recon checks: cash."""

from __future__ import annotations

from sync_server.recon.kinds import Discrepancy


def checks(context) -> list[Discrepancy]:
    """Every cash discrepancy of the run's scope."""
    return []
