"""provisioning/: install.sh and the systemd units it installs.

- every shell script of the repository passes shellcheck;
- the units say what matters (user, restart, hardening, watchdog, the kiosk's order) and run what install.sh
  installs: the paths are read from install.sh itself, not repeated here;
- install.sh into a staging root (``--root``, as root): users, data folder, settings, venv, units enabled; a second
  run changes nothing; the staged units pass ``systemd-analyze verify``; ``--uninstall`` keeps the data; an upgrade
  replaces the kit; bad options are refused with a message and change nothing.

A tiny stand-in wheel (``station-kit`` with a ``station`` console script and no dependencies) is installed from a
local wheelhouse, so no test reaches the network.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shlex
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL_SH = REPO / "provisioning" / "install.sh"
UNITS = REPO / "provisioning" / "systemd"
SERVER = "https://sync.bank.example"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="install.sh creates users and chowns files: run the suite as root (CI does)"
)


# --- Reading the units and install.sh ------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, repeated keys kept in order, continued lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    section = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            sections.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        sections[section].append((key.strip(), value.strip()))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    """Every value of ``key`` in ``section``, space-separated lists split (After=a b, After=c -> [a, b, c])."""
    found = []
    for name, value in unit[section]:
        if name == key:
            found.extend(value.split() if key in {"After", "Wants", "PartOf", "WantedBy", "Conflicts"} else [value])
    return found


def one(unit: dict, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"{key}= given {len(found)} times in [{section}]"
    return found[0]


def installer_settings() -> dict[str, str]:
    """The plain assignments at the top of install.sh (PREFIX=/opt/station-kit, VENV=$PREFIX/venv, ...)."""
    settings: dict[str, str] = {}
    for match in re.finditer(r"^([A-Z_]+)=([^\s(]+)$", INSTALL_SH.read_text(encoding="utf-8"), re.M):
        settings[match[1]] = re.sub(r"\$(\w+)", lambda ref: settings[ref[1]], match[2])
    return settings


SETTINGS = installer_settings()
STATION = parse_unit(UNITS / "station.service")
KIOSK = parse_unit(UNITS / "station-kiosk.service")


def test_every_shell_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: `./run.sh test` installs it (apt-get install shellcheck)"
    scripts = sorted({INSTALL_SH, REPO / "run.sh", REPO / ".ci" / "run", *REPO.glob("[!.]*/**/*.sh")})
    result = subprocess.run([shellcheck, "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_installer_settings_are_read():
    assert SETTINGS["VENV"] == "/opt/station-kit/venv"
    assert SETTINGS["DEFAULT_DATA_DIR"] == "/var/lib/station"
    assert SETTINGS["ENV_FILE"] == "/etc/station-kit/station.env"


def test_station_unit_runs_the_installed_station_under_its_own_user():
    command = shlex.split(one(STATION, "Service", "ExecStart"))
    assert command[:2] == [f"{SETTINGS['VENV']}/bin/station", "serve"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert one(STATION, "Service", "User") == SETTINGS["STATION_USER"] == "station"
    assert one(STATION, "Service", "EnvironmentFile") == SETTINGS["ENV_FILE"]
    assert one(STATION, "Service", "Restart") == "always"
    assert one(STATION, "Install", "WantedBy") == "multi-user.target"
    # Ready only once /health answers (station/systemd.py), then fed only while it keeps answering.
    assert one(STATION, "Service", "Type") == "notify"
    assert one(STATION, "Service", "NotifyAccess") == "main"
    assert 10 <= int(one(STATION, "Service", "WatchdogSec")) <= 300


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", SETTINGS["DEFAULT_DATA_DIR"]),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "~@privileged @resources"),
        ("UMask", "0077"),
    ],
)
def test_station_unit_is_hardened(key, expected):
    assert expected in values(STATION, "Service", key)


def test_station_unit_keeps_the_receipt_printer_reachable():
    keys = {key for key, _ in STATION["Service"]}
    # Each of these would fence off /dev/bus/usb or /dev/ttyUSB0 (the printer) or hide the printer groups.
    assert not keys & {"PrivateDevices", "ProtectClock", "DevicePolicy", "PrivateUsers"}
    assert set(one(STATION, "Service", "SupplementaryGroups").split()) == {"lp", "dialout"}


def station_health_url() -> str:
    command = shlex.split(one(STATION, "Service", "ExecStart"))
    return f"http://{command[command.index('--host') + 1]}:{command[command.index('--port') + 1]}/health"


def test_kiosk_starts_after_the_station_answers_and_restarts_with_it():
    assert "station.service" in values(KIOSK, "Unit", "After")
    assert "station.service" in values(KIOSK, "Unit", "Wants")
    assert "station.service" in values(KIOSK, "Unit", "PartOf")
    assert one(KIOSK, "Service", "Restart") == "always"
    assert one(KIOSK, "Install", "WantedBy") == "multi-user.target"
    wait = shlex.split(one(KIOSK, "Service", "ExecStartPre"))
    assert wait[:2] == [f"{SETTINGS['VENV']}/bin/station", "wait-ready"]
    assert wait[wait.index("--url") + 1] == station_health_url()


def test_kiosk_runs_chromium_full_screen_on_the_station_ui_as_its_own_user():
    command = shlex.split(one(KIOSK, "Service", "ExecStart"))
    assert command[0] == "/usr/bin/cage"
    browser = command[command.index("--") + 1]
    assert browser == SETTINGS["BROWSER_LINK"]
    flags = command[command.index("--") + 2 : -1]
    assert command[-1] == station_health_url().removesuffix("health")
    for flag in ("--kiosk", "--noerrdialogs", "--no-first-run", "--disable-translate", "--disable-pinch",
                 "--overscroll-history-navigation=0"):
        assert flag in flags
    assert "--no-sandbox" not in flags
    interval = [int(f.split("=")[1]) for f in flags if f.startswith("--check-for-update-interval=")]
    assert interval and interval[0] >= 30 * 24 * 3600
    state = "/var/lib/" + one(KIOSK, "Service", "StateDirectory")
    assert state == SETTINGS["KIOSK_HOME"]
    assert f"--user-data-dir={state}/chromium" in flags
    # Not the station's user: the browser never reads the station's keys.
    assert one(KIOSK, "Service", "User") == SETTINGS["KIOSK_USER"] != SETTINGS["STATION_USER"]
    assert one(KIOSK, "Service", "PAMName") == Path(SETTINGS["PAM_FILE"]).name
    assert one(KIOSK, "Service", "NoNewPrivileges") == "yes"


# --- install.sh into a staging root --------------------------------------------------------------------------------


def make_wheel(folder: Path, version: str) -> Path:
    """A minimal ``station-kit`` wheel: a ``station`` console script that prints its version, no dependencies."""
    dist_info = f"station_kit-{version}.dist-info"
    files = {
        "station_kit_probe.py": f"def cli():\n    print('station-kit probe {version}')\n",
        f"{dist_info}/METADATA": (f"Metadata-Version: 2.1\nName: station-kit\nVersion: {version}\n"
                                  "Provides-Extra: station\n"),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": "[console_scripts]\nstation = station_kit_probe:cli\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"station_kit-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def new_root(path: Path, *, browser: str | None = None, venv: Path | None = None) -> Path:
    """An empty staging root with the machine's user databases (useradd --prefix edits copies of them), and
    optionally a ready venv without the kit (making one takes ten seconds or more)."""
    (path / "etc").mkdir(parents=True)
    if venv:
        shutil.copytree(venv, path / "opt/station-kit/venv", symlinks=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        shutil.copy2(f"/etc/{name}", path / "etc" / name)
    if browser:
        (path / "usr" / "bin").mkdir(parents=True)
        (path / browser.lstrip("/")).write_text("#!/bin/sh\n")
        (path / browser.lstrip("/")).chmod(0o755)
    return path


def run_install(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL_SH), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=600)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its type, mode, owner, size, mtime and content (or link target)."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = None
            seen[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, info.st_size,
                                                 info.st_mtime_ns, content)
    return seen


def passwd(root: Path, user: str) -> list[str] | None:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return fields
    return None


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheelhouse")
    make_wheel(folder, "0.0.1")
    return folder


@pytest.fixture(scope="module")
def staged(tmp_path_factory, wheelhouse):
    """A Raspberry Pi OS-like root (Chromium as chromium-browser) installed once with --server."""
    if os.geteuid() != 0:
        pytest.skip("install.sh runs as root")
    root = new_root(tmp_path_factory.mktemp("staged") / "root", browser="/usr/bin/chromium-browser")
    result = run_install(root, "--wheel", str(wheelhouse / "station_kit-0.0.1-py3-none-any.whl"),
                         "--wheelhouse", str(wheelhouse), "--server", SERVER)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, result


@pytest.fixture(scope="module")
def empty_venv(staged, tmp_path_factory):
    """The staged root's venv without the kit: later roots start from a copy of it."""
    root, _ = staged
    venv = tmp_path_factory.mktemp("venv") / "venv"
    shutil.copytree(root / "opt/station-kit/venv", venv, symlinks=True)
    subprocess.run([venv / "bin/python", "-m", "pip", "uninstall", "--quiet", "--yes", "station-kit"], check=True)
    return venv


@needs_root
def test_install_sets_up_users_data_folder_settings_venv_and_units(staged):
    root, result = staged
    assert "Debian packages: skipped" in result.stdout
    station = passwd(root, "station")
    kiosk = passwd(root, "station-kiosk")
    assert station and station[5] == "/var/lib/station" and station[6] == "/usr/sbin/nologin"
    assert kiosk and kiosk[5] == "/var/lib/station-kiosk" and kiosk[6] == "/usr/sbin/nologin"
    assert int(station[2]) < 1000 and int(kiosk[2]) < 1000  # system users
    data = (root / "var/lib/station").stat()
    assert stat.S_IMODE(data.st_mode) == 0o700 and (data.st_uid, data.st_gid) == (int(station[2]), int(station[3]))
    assert (root / "etc/station-kit/station.env").read_text().splitlines()[1:] == [
        "STATION_DATA_DIR=/var/lib/station", f"STATION_SERVER_URL={SERVER}"]
    # The path every unit runs is the one the installer fills.
    for unit in (STATION, KIOSK):
        for key in ("ExecStart", "ExecStartPre"):
            for line in values(unit, "Service", key):
                program = root / shlex.split(line)[0].lstrip("/")
                if shlex.split(line)[0] != "/usr/bin/cage":  # from Debian, checked by systemd-analyze below
                    assert os.access(program, os.X_OK), program
    probe = subprocess.run([root / "opt/station-kit/venv/bin/station"], capture_output=True, text=True)
    assert probe.stdout.strip() == "station-kit probe 0.0.1"
    assert os.readlink(root / "opt/station-kit/bin/kiosk-browser") == "/usr/bin/chromium-browser"
    for name in ("station.service", "station-kiosk.service"):
        assert (root / "etc/systemd/system" / name).read_bytes() == (UNITS / name).read_bytes()
        wants = root / "etc/systemd/system/multi-user.target.wants" / name
        assert os.readlink(wants) == f"/etc/systemd/system/{name}"
    assert (root / "etc/pam.d/station-kiosk").read_bytes() == (UNITS / "station-kiosk.pam").read_bytes()
    assert not (root / "etc/systemd/system/station.service.d").exists()


@needs_root
def test_a_second_install_changes_nothing(staged, wheelhouse):
    root, _ = staged
    before = snapshot(root)
    result = run_install(root, "--wheel", str(wheelhouse / "station_kit-0.0.1-py3-none-any.whl"),
                         "--wheelhouse", str(wheelhouse))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to change" in result.stdout
    assert snapshot(root) == before
    # The server given the first time is kept when not given again.
    assert f"STATION_SERVER_URL={SERVER}" in (root / "etc/station-kit/station.env").read_text()


def systemd_analyze_verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` of ``units`` as installed in ``root``, with what Debian gives the device there:
    systemd's own units and cage (the kiosk's ExecStart)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `./run.sh test` installs it (apt-get install systemd)"
    cage = Path("/usr/bin/cage")
    assert cage.is_file(), "cage is missing: `./run.sh test` installs it (apt-get install cage)"
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(cage, root / "usr/bin/cage")
    return subprocess.run([analyze, "verify", f"--root={root}", *units], capture_output=True, text=True)


@needs_root
def test_staged_units_pass_systemd_analyze_verify(staged):
    root, _ = staged
    result = systemd_analyze_verify(root, "station.service", "station-kiosk.service")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    # systemd's own score of the station's sandbox (0 best, 10 worst): 1.8 when written; keep it under 2.0.
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}", "--threshold=20",
                               "--no-pager", "station.service"], capture_output=True, text=True)
    assert security.returncode == 0, security.stdout[-3000:]
    # It can fail: a misspelt directive is reported.
    broken = (UNITS / "station.service").read_text().replace("Restart=always", "Restrat=always")
    (root / "etc/systemd/system/broken.service").write_text(broken)
    result = systemd_analyze_verify(root, "broken.service")
    assert "Unknown key 'Restrat'" in result.stderr


@needs_root
def test_root_owned_files_in_the_data_folder_are_given_back_to_the_station(staged, wheelhouse):
    root, _ = staged
    left_by_sudo = root / "var/lib/station/keys"
    left_by_sudo.mkdir()
    (left_by_sudo / "signing.jwk").write_text("{}")
    result = run_install(root, "--wheel", str(wheelhouse / "station_kit-0.0.1-py3-none-any.whl"),
                         "--wheelhouse", str(wheelhouse))
    assert result.returncode == 0, result.stdout + result.stderr
    uid = int(passwd(root, "station")[2])
    assert left_by_sudo.stat().st_uid == uid and (left_by_sudo / "signing.jwk").stat().st_uid == uid
    assert "gave 2 files in /var/lib/station back to station" in result.stdout


@needs_root
@pytest.mark.slow
def test_upgrade_then_uninstall_keeps_the_data(tmp_path, wheelhouse, empty_venv):
    root = new_root(tmp_path / "root", venv=empty_venv)
    result = run_install(root, "--wheel", str(wheelhouse / "station_kit-0.0.1-py3-none-any.whl"),
                         "--wheelhouse", str(wheelhouse))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no Chromium" in result.stderr  # neither chromium nor chromium-browser in this root
    assert os.readlink(root / "opt/station-kit/bin/kiosk-browser") == "/usr/bin/chromium"
    journal = root / "var/lib/station/station.db"
    journal.write_bytes(b"the journal")

    newer = make_wheel(tmp_path / "newer", "0.0.2")
    result = run_install(root, "--wheel", str(newer), "--wheelhouse", str(newer.parent))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installed station-kit 0.0.2" in result.stdout
    probe = subprocess.run([root / "opt/station-kit/venv/bin/station"], capture_output=True, text=True)
    assert probe.stdout.strip() == "station-kit probe 0.0.2"
    assert "Nothing to change" in run_install(root, "--wheel", str(newer), "--wheelhouse", str(newer.parent)).stdout

    result = run_install(root, "--uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    for gone in ("etc/systemd/system/station.service", "etc/systemd/system/station-kiosk.service",
                 "etc/systemd/system/multi-user.target.wants/station.service", "etc/pam.d/station-kiosk",
                 "etc/station-kit", "opt/station-kit"):
        assert not (root / gone).exists(), gone
    assert journal.read_bytes() == b"the journal"
    assert stat.S_IMODE((root / "var/lib/station").stat().st_mode) == 0o700
    assert passwd(root, "station") is not None
    assert "Kept: the data folder /var/lib/station" in result.stdout
    again = run_install(root, "--uninstall")
    assert again.returncode == 0 and "Nothing to remove" in again.stdout


@needs_root
@pytest.mark.slow
def test_another_data_folder_gets_its_own_writable_path(tmp_path, wheelhouse, empty_venv):
    root = new_root(tmp_path / "root", venv=empty_venv)
    result = run_install(root, "--wheel", str(wheelhouse / "station_kit-0.0.1-py3-none-any.whl"),
                         "--wheelhouse", str(wheelhouse), "--data-dir", "/srv/station")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE((root / "srv/station").stat().st_mode) == 0o700
    assert "STATION_DATA_DIR=/srv/station" in (root / "etc/station-kit/station.env").read_text()
    drop_in = parse_unit(root / "etc/systemd/system/station.service.d/data-dir.conf")
    assert values(drop_in, "Service", "ReadWritePaths") == ["", "/srv/station"]
    result = systemd_analyze_verify(root, "station.service")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    # Moving a station's data elsewhere is refused: the new folder would start a new station.
    (root / "srv/station/config.json").write_text("{}")
    before = snapshot(root)
    moved = run_install(root, "--wheel", str(wheelhouse / "station_kit-0.0.1-py3-none-any.whl"),
                        "--wheelhouse", str(wheelhouse), "--data-dir", "/var/lib/station")
    assert moved.returncode == 1
    assert "the station's data is in /srv/station" in moved.stderr
    assert snapshot(root) == before


@needs_root
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "ftp://sync.bank.example"], "--server ftp://sync.bank.example: give the sync server's URL"),
        (["--server", "https://sync.bank.example/'; rm -rf /"], "give the sync server's URL"),
        (["--server"], "--server needs a value"),
        (["--wheel", "/nonexistent/station_kit-1-py3-none-any.whl"], "no such file"),
        (["--wheel", "/etc/passwd"], "is not a wheel"),
        (["--data-dir", "relative/path"], "give an absolute path"),
        (["--data-dir", "/var/lib/../../etc/x"], "give an absolute path"),
        (["--data-dir", "/srv"], "give an absolute path"),
        (["--data-dir", "/home/pi/station"], "the station cannot keep its data there"),
        (["--data-dir", "/tmp/station"], "the station cannot keep its data there"),
        (["--data-dir", "/etc/ssh"], "the station cannot keep its data there"),
        (["--wheelhouse", "/nonexistent"], "is not a directory"),
        (["--index-url", "not a url"], "is not an http(s) URL"),
        (["--uninstall", "--server", "https://sync.bank.example"], "--uninstall takes no install options"),
        (["--frobnicate"], "unknown option: --frobnicate"),
    ],
)
def test_bad_options_are_refused_and_change_nothing(tmp_path, args, message):
    root = new_root(tmp_path / "root")
    before = snapshot(root)
    result = run_install(root, *args)
    assert result.returncode == 2
    assert message in result.stderr and "see --help" in result.stderr
    assert snapshot(root) == before


@needs_root
def test_a_folder_with_other_files_is_not_taken_over(tmp_path):
    root = new_root(tmp_path / "root")
    (root / "var/lib/postgresql").mkdir(parents=True)
    (root / "var/lib/postgresql/data").write_text("someone else's")
    before = snapshot(root)
    result = run_install(root, "--data-dir", "/var/lib/postgresql")
    assert result.returncode == 2
    assert "already holds other files" in result.stderr
    assert snapshot(root) == before


def test_help_says_how_to_use_it():
    result = subprocess.run(["bash", str(INSTALL_SH), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--wheel", "--index-url", "--wheelhouse", "--server", "--data-dir", "--skip-apt", "--root",
                   "--uninstall"):
        assert option in result.stdout
    assert result.stdout.startswith("Usage: install.sh")


def test_every_option_is_documented():
    usage = subprocess.run(["bash", str(INSTALL_SH), "--help"], capture_output=True, text=True).stdout
    operations = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = operations.split("## Installing a station", 1)[1].split("\n## ", 1)[0]
    options = set(re.findall(r"^\s+(--[a-z-]+)", usage, re.M))
    assert len(options) >= 9
    for option in options:
        assert f"`{option}" in section, f"install.sh {option} missing from docs/operations.md, Installing a station"
