"""The docs stay true: every command and every UI setting is documented."""

from __future__ import annotations

from pathlib import Path

from station import cli

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = (ROOT / "docs/operations.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_command_is_in_the_operations_doc():
    for name, command in cli.cli.commands.items():
        assert f"`station {name}" in OPERATIONS, name
        # A group's commands each have their own row (`station agent add`, `station agent list`).
        for sub in getattr(command, "commands", {}):
            assert f"`station {name} {sub}" in OPERATIONS, f"{name} {sub}"


def test_serve_is_in_the_readme():
    assert "station serve" in README and "127.0.0.1:8080" in README


def test_ui_settings_are_documented():
    for setting in ("agent_idle_seconds", "customer_auth_seconds", "keys/ui_session.key", "WTF_CSRF_ENABLED",
                    "SYNC_NOW_WAIT_SECONDS", "OFFLINE_WARNING_SHARE", "sync_now", "station.printer"):
        assert f"`{setting}`" in OPERATIONS, setting
