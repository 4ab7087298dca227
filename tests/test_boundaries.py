"""The import boundaries: a pure ``station.protocol``, a server that imports only that from ``station``, and
each side importing only the core dependencies and its own extra (a Pi never needs psycopg, the bank's server
never needs python-escpos)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"station", "sync_server", "dbkit", "provisioning"}


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Every absolute module name imported anywhere in ``folder`` (also inside functions), with its files."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_station_protocol_loads_neither_flask_nor_peewee_in_a_fresh_interpreter():
    probe = """
import json, pkgutil, importlib, sys
import station.protocol
modules = ["station.protocol"] + [f"station.protocol.{m.name}" for m in pkgutil.iter_modules(station.protocol.__path__)]
for name in modules:
    importlib.import_module(name)
print(json.dumps({"imported": modules, "loaded": sorted(sys.modules)}))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(result.stdout)
    assert {f"station.protocol.{name}" for name in ("envelope_errors", "key_codecs", "sealing", "compact", "envelope",
                                                    "acks", "tokens", "money", "pins")} <= set(report["imported"])
    loaded = set(report["loaded"])
    assert not {"flask", "peewee", "playhouse", "werkzeug", "station.db", "station.app"} & loaded
    assert {name for name in loaded if name.split(".")[0] == "station"} == set(report["imported"]) | {"station"}


def test_importing_the_station_package_loads_no_app():
    probe = "import sys, station; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", "import json; " + probe], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert not {"flask", "peewee", "station.app"} & set(json.loads(result.stdout))


def test_sync_server_imports_nothing_from_station_but_the_protocol():
    from_station = {name: files for name, files in imported_modules("sync_server").items()
                    if name == "station" or name.startswith("station.")}
    assert from_station, "the scan found no import of station.protocol at all"
    outside = {name: files for name, files in from_station.items()
               if name != "station.protocol" and not name.startswith("station.protocol.")}
    assert outside == {}


def test_dbkit_imports_neither_side_but_the_pure_protocol():
    first_party = {name: files for name, files in imported_modules("dbkit").items()
                   if name.split(".")[0] in FIRST_PARTY - {"dbkit"}}
    assert "station.protocol.times" in first_party
    outside = {name: files for name, files in first_party.items()
               if name != "station.protocol" and not name.startswith("station.protocol.")}
    assert outside == {}


def test_both_sides_use_dbkit():
    assert "dbkit" in imported_modules("station")
    assert "dbkit" in imported_modules("sync_server")


def _distribution(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _declared() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    return {"core": {_distribution(r) for r in project["dependencies"]},
            "station": {_distribution(r) for r in extras["station"]},
            "server": {_distribution(r) for r in extras["server"]}}


def _with_their_requirements(distributions: set[str]) -> set[str]:
    """The distributions and what they require themselves (flask brings werkzeug and markupsafe)."""
    closure = set(distributions)
    for name in distributions:
        closure |= {_distribution(r) for r in requires(name) or () if "extra ==" not in r}
    return closure


def third_party_distributions(folder: str) -> dict[str, set[str]]:
    """The installed distributions ``folder`` imports, each with the files importing it."""
    providers = packages_distributions()
    found: dict[str, set[str]] = {}
    for name, files in imported_modules(folder).items():
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
            continue
        assert top in providers, f"{top} (imported by {sorted(files)}) is not installed"
        for distribution in providers[top]:
            found.setdefault(_distribution(distribution), set()).update(files)
    return found


def test_extras_split_core_station_and_server():
    declared = _declared()
    assert not declared["station"] & declared["server"]
    assert not (declared["station"] | declared["server"]) & declared["core"]
    assert {"psycopg", "gunicorn"} <= declared["server"]
    assert {"python-escpos", "pillow", "apscheduler", "flask-babel"} <= declared["station"]
    assert "flask-wtf" in declared["core"]  # CSRF on the station's forms and the bank's dashboard login
    assert "segno" in declared["core"]  # receipts' QR codes at the station, enrollment sheets at the bank


@pytest.mark.parametrize(("folder", "side", "other"), [("sync_server", "server", "station"),
                                                        ("station", "station", "server"),
                                                        ("dbkit", "core", "server")])
def test_each_side_imports_only_the_core_and_its_own_extra(folder, side, other):
    declared = _declared()
    used = third_party_distributions(folder)
    assert used, "the scan found no third-party import"
    from_other = {name: sorted(files) for name, files in used.items() if name in declared[other]}
    assert from_other == {}, f"{folder}/ imports what only the {other} extra installs"
    allowed = _with_their_requirements(declared["core"] | declared[side])
    undeclared = {name: sorted(files) for name, files in used.items() if name not in allowed}
    assert undeclared == {}, f"{folder}/ imports what neither the core nor the {side} extra declares"
