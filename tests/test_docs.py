"""Docs that are tested: every command and every setting is documented; the quick start has two commands."""

import re
from pathlib import Path

from station.cli import cli
from station.protocol.policy import DEFAULT_POLICY

ROOT = Path(__file__).resolve().parent.parent


def test_every_station_command_is_documented():
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, command in cli.commands.items():
        # A group's commands each (`station agent add`, `station clock accept`).
        for usage in [f"station {name} {sub}" for sub in getattr(command, "commands", {})] or [f"station {name}"]:
            assert usage in operations, f"`{usage}` missing from docs/operations.md"
            assert usage in readme, f"`{usage}` missing from README.md"


def test_every_policy_setting_is_documented():
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for key in DEFAULT_POLICY:
        assert f"`{key}`" in operations, f"policy setting {key} missing from docs/operations.md"


def test_every_server_policy_setting_is_documented():
    from sync_server.policy import DEFAULT_SERVER_POLICY

    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = operations.split("## Server policy", 1)[1].split("\n## ", 1)[0]
    for key in DEFAULT_SERVER_POLICY:
        assert f"`{key}`" in section, f"server policy setting {key} missing from docs/operations.md"


def test_quick_start_has_exactly_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands == ["./run.sh demo    # " + commands[0].split("# ", 1)[1], commands[1]]
    assert commands[1].startswith("./run.sh test")
    assert "./run.sh test" in (ROOT / ".ci" / "run").read_text()


def test_every_sync_server_command_is_documented():
    from sync_server.cli import cli as server_cli

    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for name, command in server_cli.commands.items():
        for sub in getattr(command, "commands", {None: None}):
            usage = f"sync-server {name}" + (f" {sub}" if sub else "")
            assert usage in operations, f"`{usage}` missing from docs/operations.md"
