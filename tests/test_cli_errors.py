"""No command ends in a traceback (issue 13): an error nobody expected is one line on stderr and exit status 70
(``station.protocol.commands``); `station simulate` runs again and again on one data folder, from any hour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import FakeClock

from station import agents, business_day
from station.demo import DEMO_AGENTS, ensure_demo_agents
from station.protocol.commands import DEBUG_ENV, UNEXPECTED_ERROR_EXIT, GuardedGroup
from station.provision import init_station

ROOT = Path(__file__).resolve().parent.parent


def run(module: str, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    """One of the kit's commands in its own process, as a person at the terminal runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(DEBUG_ENV, None)
    if debug:
        env[DEBUG_ENV] = "1"
    return subprocess.run([sys.executable, "-c", f"from {module} import cli; cli()", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@click.group(cls=GuardedGroup)
def example():
    """A group of the kit's kind."""


@example.command()
@click.argument("path")
def read(path):
    click.echo(json.loads(Path(path).read_text(encoding="utf-8")))


@example.command()
def refuse():
    raise click.ClickException("refused, as foreseen")


def test_an_unexpected_error_is_one_line_and_status_70(tmp_path):
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json", encoding="utf-8")
    result = CliRunner().invoke(example, ["read", str(damaged)])
    assert result.exit_code == UNEXPECTED_ERROR_EXIT
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: example read failed on an unexpected error (JSONDecodeError")
    assert f"{DEBUG_ENV}=1" in lines[0]


def test_a_foreseen_refusal_keeps_its_message_and_status_1():
    result = CliRunner().invoke(example, ["refuse"])
    assert result.exit_code == 1 and result.output == "Error: refused, as foreseen\n"


def test_station_on_a_damaged_config_says_so_in_one_line(station):
    (station.data_dir / "config.json").write_text("{damaged", encoding="utf-8")
    result = run("station.cli", "status", "--data-dir", str(station.data_dir))
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    # A damaged config is a foreseen refusal (station.db.DataFolderDamaged): status 1, with what to do.
    assert result.returncode == 1 and "station restore --replace" in result.stderr


def test_sync_server_on_damaged_keys_says_so_in_one_line(tmp_path):
    keys = tmp_path / "keys"
    assert run("sync_server.cli", "keys", "--keys-dir", str(keys), "--create").returncode == 0
    for key_file in keys.iterdir():
        key_file.write_text("damaged", encoding="utf-8")
    result = run("sync_server.cli", "keys", "--keys-dir", str(keys))
    assert result.returncode == UNEXPECTED_ERROR_EXIT and "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    # The technician's way to the details.
    detailed = run("sync_server.cli", "keys", "--keys-dir", str(keys), debug=True)
    assert "Traceback" in detailed.stderr and detailed.returncode == result.returncode


def test_recon_on_a_database_it_cannot_open_says_so_in_one_line(tmp_path):
    result = run("sync_server.recon.cli", "run", "--database-url", f"sqlite:///{tmp_path}/missing/bank.db")
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout


# -- simulate, twice, on one data folder ----------------------------------------------------------------------
#: (when the station was made, in UTC; what its last business day did): before opening, mid-morning, after closing
#: and near midnight in Beijing, a day left open with its last entry after 17:30 or past midnight, or closed.
STARTS = [
    (datetime(2026, 11, 2, 21, 0, tzinfo=UTC), "no day"),
    (datetime(2026, 11, 3, 2, 0, tzinfo=UTC), "day closed"),
    (datetime(2026, 11, 3, 10, 0, tzinfo=UTC), "day left open late"),
    (datetime(2026, 11, 3, 15, 50, tzinfo=UTC), "day left open late"),
    (datetime(2026, 11, 3, 15, 50, tzinfo=UTC), "day closed"),
]


@pytest.mark.parametrize(("made_at", "day"), STARTS,
                         ids=[f"{(moment.hour + 8) % 24:02d}h-beijing-{day}" for moment, day in STARTS])
def test_simulate_runs_twice_on_one_folder(tmp_path, made_at, day):
    clock = FakeClock(made_at)
    st = init_station(tmp_path / "st", "ST-0042", clock=clock)
    with st.bound():
        ensure_demo_agents(st)
    if day != "no day":
        agent_id, _, _, pin = DEMO_AGENTS[0]
        session = agents.login_agent(st, agent_id, pin)
        business_day.open_day(st, session, {"10000": 300})
        clock.advance(hours=3)  # the last entry late in the evening, or past midnight, of the day's date
        if day == "day closed":
            business_day.close_day(st, session, {"10000": 300})
        else:
            agents.add_agent(st, "A02", "王芳", "agent", "2580")
    st.close()
    for seed in (1, 2):
        result = run("station.cli", "simulate", "--data-dir", str(tmp_path / "st"), "-n", "40", "--seed", str(seed))
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert sum(json.loads(result.stdout).values()) > 0
    verified = run("station.cli", "verify-journal", "--data-dir", str(tmp_path / "st"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
