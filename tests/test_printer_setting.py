"""``station printer``: the printer settings are checked before config.json changes."""

import json

import pytest
from click.testing import CliRunner

from station.cli import cli


def set_printer(station, settings: str):
    return CliRunner().invoke(cli, ["printer", "--data-dir", str(station.data_dir), settings])


def saved(station) -> dict:
    return json.loads((station.data_dir / "config.json").read_text())


def test_a_valid_printer_is_saved(station):
    result = set_printer(station, '{"kind": "network", "host": "127.0.0.1", "port": 9100}')
    assert result.exit_code == 0, result.output
    assert saved(station)["printer"] == {"kind": "network", "host": "127.0.0.1", "port": 9100}
    assert saved(station)["station_id"] == "ST-0001"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("{kind: usb}", "SETTINGS is not JSON"),
        ('{"kind": "parallel"}', "kind must be one of"),
        ('{"kind": "usb", "vendor_id": "0x0416"}', "needs product_id"),
        ('{"kind": "network"}', "needs host"),
        ('["usb"]', "printer must be an object"),
        ('{"kind": "network", "host": "127.0.0.1", "port": "ninety-one"}', "port must be a number"),
        ('{"kind": "usb", "vendor_id": "0x0416", "product_id": "50x1"}', "product_id must be a number"),
        ('{"kind": "network", "host": "127.0.0.1", "timeout": "10"}', "timeout must be a number of seconds"),
        ('{"kind": "serial", "device": "/dev/ttyS0", "timeout": 0}', "timeout must be a number of seconds"),
    ],
)
def test_bad_printer_settings_are_refused_and_nothing_changes(station, settings, message):
    before = saved(station)
    result = set_printer(station, settings)
    assert result.exit_code == 1 and message in result.output
    assert saved(station) == before
