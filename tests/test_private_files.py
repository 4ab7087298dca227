"""One writer of private files for both sides: mode 0600, atomic, and never replacing the server's keys."""

from __future__ import annotations

import os
import stat

import pytest

from station.protocol.private_files import write_private_file


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_owner_only_and_replaced_whole(tmp_path):
    path = tmp_path / "keys" / "signing.jwk"
    write_private_file(path, "first")
    write_private_file(path, "second")
    assert path.read_text(encoding="utf-8") == "second"
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert os.listdir(path.parent) == ["signing.jwk"]


def test_without_replace_an_existing_file_is_kept(tmp_path):
    path = tmp_path / "signing.jwk"
    write_private_file(path, "pinned", replace=False)
    with pytest.raises(FileExistsError):
        write_private_file(path, "another", replace=False)
    assert path.read_text(encoding="utf-8") == "pinned"
    assert os.listdir(tmp_path) == ["signing.jwk"]
