"""What the fuzz trials of tests/reliability/ share: how many examples to run (a quick count by default, the full
count with ``RELIABILITY_FULL=1``) and the figures each writes to ``RELIABILITY_REPORT_DIR`` (``<module>.json``)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from hypothesis import HealthCheck, settings


def full_run() -> bool:
    """True when the trials run their full counts (``RELIABILITY_FULL=1``)."""
    return os.environ.get("RELIABILITY_FULL") == "1"


def fuzz_settings(quick: int, full: int):
    """Hypothesis settings for a fuzz trial: ``quick`` examples by default, ``full`` with ``RELIABILITY_FULL=1``;
    no deadline and no example database (a trial is repeatable from its seed, and leaves no folder behind)."""
    return settings(max_examples=full if full_run() else quick, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


def write_report(module: str, figures: dict) -> None:
    """Write ``figures`` to ``$RELIABILITY_REPORT_DIR/<module>.json`` when that variable is set. Under pytest-xdist
    each worker runs part of the module: the workers of one run add their counts up (a lock file beside the report
    names the run that wrote it last)."""
    folder = os.environ.get("RELIABILITY_REPORT_DIR")
    if not folder:
        return
    name = module.rsplit(".", 1)[-1]
    Path(folder).mkdir(parents=True, exist_ok=True)
    report = Path(folder) / f"{name}.json"
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    with open(Path(folder) / f".{name}.run", "a+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        if run and lock.read() == run and report.exists():
            earlier = json.loads(report.read_text(encoding="utf-8"))
            figures = {key: earlier.get(key, 0) + value if isinstance(value, int) else value
                       for key, value in figures.items()}
        lock.seek(0)
        lock.truncate()
        lock.write(run)
        report.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
