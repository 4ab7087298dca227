#!/usr/bin/env bash
# The README's two commands: `./run.sh demo` and `./run.sh test`.
# Both create .venv (Python >= 3.11) and install the project into it first.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

install() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
}

demo() {
    install
    local dir=${DEMO_DIR:-demo-data}
    local station="$dir/station"
    if [ ! -f "$station/config.json" ]; then
        "$VENV/bin/station" init --data-dir "$station" --station-id ST-0001 --demo
        "$VENV/bin/station" simulate --data-dir "$station" --transactions 120 --seed 1
    fi
    "$VENV/bin/station" verify-journal --data-dir "$station"
    "$VENV/bin/station" summary --data-dir "$station"
}

run_tests() {
    install
    "$VENV/bin/ruff" check .
    "$VENV/bin/python" -m pytest "$@"
}

case "${1:-}" in
    demo) shift; demo "$@" ;;
    test) shift; run_tests "$@" ;;
    *) echo "usage: ./run.sh demo | ./run.sh test [pytest args]" >&2; exit 2 ;;
esac
