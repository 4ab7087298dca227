"""Files the bank's staff hand to a command, read all or nothing: every bad line named, with its number and why.

A biller's settlement file (``sync_server.recon.billers_import``) and the regulator's answers to 12315 complaints
(``sync_server.complaints``) are both imported whole or not at all: one bad line and nothing is written, and the
operator is told every bad line at once (not the first alone, to fix and run again, line after line).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LineError:
    """One bad line of a file: its number (1: the header) and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def bad_lines_message(errors: list[LineError], nothing: str) -> str:
    """``Nothing <nothing>: N bad lines.`` and each of them, one per line."""
    count = len(errors)
    return (f"Nothing {nothing}: {count} bad line{'s' if count != 1 else ''}.\n"
            + "\n".join(str(error) for error in errors))
