"""Recon checks on the stations' signed tails (``missing_tail``): being written on the branch recon-tail."""

from __future__ import annotations


def checks(context) -> list:
    return []
