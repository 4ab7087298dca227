"""Run the reliability trials and the hostile-input tests, and print the figures (docs/reliability.md).

    python tests/reliability/report.py            # the quick counts (as in the default test run)
    python tests/reliability/report.py --full     # the full counts (RELIABILITY_FULL=1): several minutes
    python tests/reliability/report.py -- -n 2    # anything after -- goes to both pytest runs

1. ``pytest tests/reliability`` with ``RELIABILITY_REPORT_DIR`` set to a fresh folder: every trial module writes its
   figures there as ``<module>.json`` (see ``tests/reliability/__init__.py``); each object becomes a row, whatever
   keys it has (``trials``/``survived``, ``cases``/``server_errors``, ``attacks``/``refused``, ``lost_entries``;
   any other key is shown under "details").
2. The hostile-input tests, ``tests/test_*hostile*.py`` (each test, and each case of a parametrized one, is one
   attack: a forged, malformed or disallowed input the test asserts is refused without harm): attacks tried are
   the cases that ran, refused are those that passed. A Hypothesis property test counts once, however many inputs
   it generates.

Prints a Markdown table and the totals; exits non-zero when a test failed, a trial did not survive, a fuzz case
got a server error, an attack was not refused, or an entry was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRIALS_DIR = Path("tests/reliability")
HOSTILE_GLOB = "test_*hostile*.py"
#: The columns every figure may have, in the table's order; any other key goes under "details".
COLUMNS = ("trials", "survived", "cases", "server_errors", "attacks", "refused", "lost_entries")


@dataclass
class Figures:
    """What the runs found: one row per fault, and whether pytest itself passed."""

    rows: list[dict] = field(default_factory=list)
    pytest_failed: list[str] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(row.get(key) or 0 for row in self.rows)

    def problems(self) -> list[str]:
        found = [f"pytest failed: {run}" for run in self.pytest_failed]
        if self.total("survived") < self.total("trials"):
            found.append("a trial did not survive")
        if self.total("server_errors"):
            found.append("a fuzz case got a server error")
        if self.total("refused") < self.total("attacks"):
            found.append("an attack was not refused")
        if self.total("lost_entries"):
            found.append("entries were lost")
        return found


def run_pytest(args: list[str], env: dict) -> int:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def read_figures(folder: Path) -> list[dict]:
    """Every ``<module>.json`` in ``folder``: a list of objects or one object; each gets its module's name."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        for item in loaded if isinstance(loaded, list) else [loaded]:
            rows.append({"module": path.stem, **item})
    return rows


def hostile_figures(junit_xml: Path) -> list[dict]:
    """One row per hostile-test module from pytest's JUnit XML: cases run (not skipped) and passed."""
    per_module: dict[str, dict] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        # classname: "tests.test_hostile_station" (or "...test_x.TestClass" for a test class)
        module = next((part for part in case.get("classname", "").split(".") if part.startswith("test_")), "?")
        row = per_module.setdefault(module, {"module": module, "fault": "hostile input (tests/" + module + ".py)",
                                             "attacks": 0, "refused": 0, "skipped": 0})
        outcomes = {child.tag for child in case}
        if "skipped" in outcomes:
            row["skipped"] += 1
            continue
        row["attacks"] += 1
        row["refused"] += not outcomes & {"failure", "error"}
    return list(per_module.values())


def collect(full: bool, attacks: bool, extra: list[str]) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="reliability-report-") as folder:
        env = {**os.environ, "RELIABILITY_REPORT_DIR": folder}
        env.pop("RELIABILITY_FULL", None)
        if full:
            env["RELIABILITY_FULL"] = "1"
        if run_pytest([str(TRIALS_DIR), *extra], env) != 0:
            figures.pytest_failed.append(str(TRIALS_DIR))
        figures.rows += read_figures(Path(folder))
        if attacks:
            modules = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob(HOSTILE_GLOB))
            junit = Path(folder) / "hostile.xml"
            if run_pytest([*modules, f"--junitxml={junit}", *extra], env) != 0:
                figures.pytest_failed.append(" ".join(modules))
            figures.rows += hostile_figures(junit) if junit.exists() else []
    return figures


def details(row: dict) -> str:
    extra = {key: value for key, value in row.items() if key not in (*COLUMNS, "module", "fault")}
    return ", ".join(f"{key} {json.dumps(value, ensure_ascii=False)}" for key, value in extra.items())


def table(figures: Figures) -> str:
    header = ["fault", *COLUMNS, "details"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in figures.rows:
        cells = [str(row.get("fault", row["module"])),
                 *("" if row.get(column) is None else str(row[column]) for column in COLUMNS), details(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(figures: Figures, full: bool) -> str:
    t = figures.total
    return "\n".join([
        f"Counts: {'full (RELIABILITY_FULL=1)' if full else 'quick (the default run)'}",
        f"Trials run: {t('trials')}, survived: {t('survived')}",
        f"Attacks tried: {t('attacks')}, refused: {t('refused')}",
        f"Fuzz cases run: {t('cases')}, server errors: {t('server_errors')}",
        f"Entries lost: {t('lost_entries')} (must be 0)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full counts (RELIABILITY_FULL=1)")
    parser.add_argument("--no-attacks", action="store_true", help="skip the hostile-input tests")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest (e.g. -n 2)")
    args = parser.parse_args(argv)
    figures = collect(args.full, not args.no_attacks, args.pytest_args)
    print(table(figures))
    print()
    print(summary(figures, args.full))
    problems = figures.problems()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
