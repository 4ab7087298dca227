"""Reliability trials: faults injected on purpose, again and again, counted, and reported (docs/reliability.md).

Every module here is marked ``reliability`` (``tests/reliability/conftest.py`` marks them; ``-m "not reliability"``
leaves them out). The default run makes a handful of trials of each fault, so the whole directory stays well under
a minute; ``RELIABILITY_FULL=1`` (or ``--reliability-full`` when ``tests/reliability`` is named on the command
line) makes the full counts: ``counts(quick, full)`` picks one.

With ``RELIABILITY_REPORT_DIR`` set, each module writes its figures to ``<module>.json`` in that folder (the
``reliability_report`` fixture, or :func:`record_figures`): one object per fault, such as
``{"fault": "...", "trials": N, "survived": N, "lost_entries": 0}``, ``{"fault": "...", "cases": N,
"server_errors": 0}`` or ``{"fault": "...", "attacks": N, "refused": N}``. ``tests/reliability/report.py`` runs the
directory and prints every figure it finds.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

#: Set to "1" for the full counts.
FULL_ENV = "RELIABILITY_FULL"
#: A folder: each module writes its figures there as ``<module>.json``.
REPORT_DIR_ENV = "RELIABILITY_REPORT_DIR"


def full_counts() -> bool:
    """Whether this run makes the full counts (``RELIABILITY_FULL=1``)."""
    return os.environ.get(FULL_ENV, "") == "1"


def counts(quick: int, full: int) -> int:
    """How many trials (entries, cases, ...) to make: ``full`` with ``RELIABILITY_FULL=1``, else ``quick``."""
    return full if full_counts() else quick


def record_figures(module: str, figures: dict) -> Path | None:
    """Keep one fault's ``figures`` in ``<RELIABILITY_REPORT_DIR>/<module>.json`` (a list of objects; an object with
    the same ``fault`` is replaced). Nothing is written without ``RELIABILITY_REPORT_DIR``. Safe when several test
    processes (xdist) write the same module's file: the file is locked while it is read and written."""
    folder = os.environ.get(REPORT_DIR_ENV)
    if not folder:
        return None
    path = Path(folder) / f"{module.rsplit('.', 1)[-1]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read()
        kept = json.loads(text) if text.strip() else []
        kept = kept if isinstance(kept, list) else [kept]
        kept = [item for item in kept if item.get("fault") != figures.get("fault")] + [figures]
        handle.seek(0)
        handle.truncate()
        json.dump(kept, handle, indent=2, ensure_ascii=False)
    return path
