#!/usr/bin/env bash
# The README's two commands: `./run.sh demo` and `./run.sh test`.
# Both create .venv (Python >= 3.11) and install the project into it first: `demo` with the station and server
# extras (`.[station,server]`), `test` with everything plus the test tools (`.[test]`). What they need from Debian
# and is missing (the venv module; for the tests Chromium, a Chinese font, shellcheck, cage and systemd-analyze)
# is installed with apt-get, as root or with sudo; when everything is there, apt is not called at all.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

# apt_install PACKAGE...: install Debian packages as root, or with sudo.
apt_install() {
    local sudo=()
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: install these Debian/Ubuntu packages (or their equivalents) first: $*" >&2
        exit 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "run.sh: missing Debian packages: $*. Run as root, or install them: apt-get install $*" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "run.sh: installing from Debian: $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# What the test suite needs from the machine: the browser tests launch /usr/bin/chromium and compare the rendering
# of Chinese text; tests/test_provisioning.py runs shellcheck and systemd-analyze and stages the kiosk's cage.
test_packages() {
    local missing=()
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
    command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    [ -x /usr/bin/cage ] || missing+=(cage)
    # espeak-ng: the confirm screen's amount read aloud (station/speech.py); its tests synthesise a real WAV.
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

install() {
    local extras=$1
    if [ ! -x "$VENV/bin/pip" ]; then
        # Debian's python3 makes venvs only with python3-venv installed.
        if ! "$PYTHON" -m venv --clear "$VENV" >/dev/null 2>&1; then
            apt_install python3-venv
            "$PYTHON" -m venv --clear "$VENV"
        fi
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[$extras]"
}

demo() {
    install station,server
    local dir server_port ui_port station server_url
    dir=$(realpath -m "${DEMO_DIR:-demo-data}")
    server_port=${DEMO_SERVER_PORT:-8800}
    ui_port=${DEMO_UI_PORT:-8080}
    station="$dir/station"
    server_url="http://127.0.0.1:$server_port"
    mkdir -p "$dir"
    # The bank's side: the sync server on SQLite, its keys, demo customers and billers for station ST-0001.
    export DATABASE_URL="sqlite:///$dir/sync-server.db"
    export SYNC_SERVER_KEYS_DIR="$dir/sync-server-keys"
    # init-db every time: it creates the schema, or applies the migrations a newer release brought.
    "$VENV/bin/sync-server" init-db
    if [ ! -f "$dir/sync-server-keys/signing.jwk" ]; then
        "$VENV/bin/sync-server" keys --create
        "$VENV/bin/sync-server" demo-data --stations ST-0001
    fi
    "$VENV/bin/sync-server" serve --host 127.0.0.1 --port "$server_port" --workers 2 &
    server_pid=$!  # global: the EXIT trap runs after this function has returned
    trap 'kill "${server_pid:-}" 2>/dev/null || true' EXIT
    "$VENV/bin/python" - "$server_url" <<'PY'
import sys, time, requests
for _ in range(100):
    try:
        if requests.get(sys.argv[1] + "/api/v1/health", timeout=1).ok:
            sys.exit(0)
    except requests.RequestException:
        pass
    time.sleep(0.2)
sys.exit("the sync server did not start")
PY
    # The station: enrolled with a one-time code, customers from the bank's downlink, a morning of activity.
    if [ ! -f "$station/config.json" ]; then
        local code
        code=$("$VENV/bin/sync-server" station add ST-0001 --name "Liujia village shop" | tail -n 1)
        # Enrolled, then a morning of activity that has already happened (today's, or yesterday's before 09:00
        # Beijing time): a station refuses to record with a clock behind its journal.
        "$VENV/bin/python" - "$station" "$server_url" "$code" <<'PY'
import sys
from station.simulate import enroll_demo_station
enroll_demo_station(sys.argv[1], sys.argv[2], sys.argv[3], transactions=60, seed=1).close()
PY
        "$VENV/bin/station" printer --data-dir "$station" '{"kind": "file", "path": "printed-receipts.escpos"}'
        "$VENV/bin/station" sync --data-dir "$station"
    fi
    "$VENV/bin/station" verify-journal --data-dir "$station"
    "$VENV/bin/station" status --data-dir "$station"
    local cards
    cards=$("$VENV/bin/python" -c 'import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT card_number FROM customer WHERE card_number IS NOT NULL ORDER BY id LIMIT 3")
print(", ".join(r[0] for r in rows))' "$station/station.db")
    cat <<TXT

Demo running: the touchscreen at http://127.0.0.1:$ui_port/ (sync server at $server_url).
Agent 田师傅 Tian PIN 1357, supervisor 周主管 Zhou PIN 2468; customers' PIN 123456 (cards $cards, ...).
Receipts "print" to $station/printed-receipts.escpos. Ctrl-C stops both.
TXT
    "$VENV/bin/station" serve --data-dir "$station" --host 127.0.0.1 --port "$ui_port"
}

run_tests() {
    test_packages
    install test
    "$VENV/bin/ruff" check .
    # The tests' temporary folders (stations' and banks' SQLite files, which are synchronous=FULL) on tmpfs when
    # the machine has one that runs programs: an fsync there costs microseconds instead of milliseconds, and the
    # suite commits tens of thousands of times. What is checked is the same. A TMPDIR you set wins.
    local shm
    shm=$(findmnt -no FSTYPE,OPTIONS --target /dev/shm 2>/dev/null || true)
    if [ -z "${TMPDIR:-}" ] && [ -w /dev/shm ] && [[ $shm == tmpfs* && $shm != *noexec* ]]; then
        export TMPDIR=/dev/shm
    fi
    # One pytest worker per core (pytest-xdist): the suite waits on fsync and PostgreSQL as much as it computes.
    "$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-auto}" "$@"
}

case "${1:-}" in
    demo) shift; demo "$@" ;;
    test) shift; run_tests "$@" ;;
    *) echo "usage: ./run.sh demo | ./run.sh test [pytest args]" >&2; exit 2 ;;
esac
