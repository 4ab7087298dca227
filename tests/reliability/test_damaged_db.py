"""Trials: a real station's database damaged on purpose, one way after another, and no command ends in a traceback.

Each trial copies a station that served a few simulated days (about 200 entries, reversals and day closes among
them), damages the copy's ``station.db`` in one way, and runs ``station verify-journal`` on it. Three outcomes are
allowed, and only these:

- ``ok``: the journal verifies and is unchanged, entry for entry, and so are the rows the entries vouch for (the
  damage hit free space, or a column no entry says anything about);
- ``refused``: the damaged-database message (exit 1) that says to restore the latest backup;
- ``broken``: ``BROKEN at seq N`` with the reason (exit 1).

Faults: a zeroed page, single-bit flips inside stored journal tokens and anywhere else in the file, truncation, and
a lost database (zero-length, missing while the keys are there, replaced by an empty one). Some trials run the
``station`` command as a separate process to check its exit code and that stderr holds no traceback.

Quick counts by default; ``RELIABILITY_FULL=1`` runs the full ones. With ``RELIABILITY_REPORT_DIR`` set, each test
leaves one JSON line ``{"fault", "trials", "survived", "lost_entries"}`` in ``test_damaged_db.json`` there (the
latest run of each fault replaces its line), for the reliability report.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from station.cli import cli
from station.context import DataFolderDamaged, Station
from station.db import DatabaseDamaged, DatabaseMissing, open_database
from station.demo import load_demo_customers
from station.provision import init_station
from station.simulate import simulate

pytestmark = pytest.mark.reliability

FULL = os.environ.get("RELIABILITY_FULL") == "1"
#: Trials per fault: (quick, full).
COUNTS = {"zeroed_page": (8, 64), "token_bit_flip": (16, 64), "bit_flip_elsewhere": (16, 64), "truncation": (6, 32)}
#: Trials per fault that also run the ``station`` command as its own process: (quick, full).
SUBPROCESS_TRIALS = (1, 8)


def trials_of(fault: str) -> int:
    return COUNTS[fault][FULL]


@dataclass
class Tally:
    """What the trials of one fault came to; ``failures`` says what went wrong in each failed trial."""

    fault: str
    trials: int = 0
    survived: int = 0
    lost_entries: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, what: str, problem: str | None, lost: int = 0) -> None:
        self.trials += 1
        self.lost_entries += lost
        if problem is None:
            self.survived += 1
        else:
            self.failures.append(f"{what}: {problem}")

    def record_and_check(self) -> None:
        """Leave the report line, then fail listing every trial that did not end as allowed."""
        record(self.fault, self.trials, self.survived, self.lost_entries)
        assert self.failures == [], "\n\n".join(self.failures)
        assert self.trials == self.survived and self.lost_entries == 0


def record(fault: str, trials: int, survived: int, lost_entries: int) -> None:
    """Replace this fault's line in ``$RELIABILITY_REPORT_DIR/test_damaged_db.json`` (nothing without the variable)."""
    folder = os.environ.get("RELIABILITY_REPORT_DIR")
    if not folder:
        return
    path = Path(folder) / f"{Path(__file__).stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"fault": fault, "trials": trials, "survived": survived, "lost_entries": lost_entries})
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # xdist workers may finish tests of this module at the same time
        handle.seek(0)
        kept = [old for old in handle.read().splitlines() if old and json.loads(old).get("fault") != fault]
        handle.seek(0)
        handle.truncate()
        handle.write("\n".join([*kept, line]) + "\n")


# -- the station damaged in the trials ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Original:
    """The undamaged station: its folder, and what the trials compare a verified copy with."""

    folder: Path
    tokens: dict[int, str]
    rows: dict[str, list[tuple]]
    token_spans: list[tuple[int, int, int]]  # (offset, length, seq) of each stored token in station.db


#: The columns an entry vouches for (``station.journal_rows``): a copy that verifies must still hold these values.
VOUCHED = {
    "operation": "SELECT seq, txn, type, agent_id, customer_id, amount_fen, fee_fen, debit_fen, cash_fen, status, "
                 "ref_txn, auth_id, details, day_id FROM operation ORDER BY seq",
    "business_day": "SELECT id, business_date, opened_by, float_fen, open_counts, cash_fen, closed_at IS NULL, "
                    "closed_by, counted_fen, variance_fen, close_counts FROM business_day ORDER BY id",
}


def read_journal(path: Path) -> tuple[dict[int, str], dict[str, list[tuple]]]:
    conn = sqlite3.connect(path)
    try:
        tokens = dict(conn.execute("SELECT seq, token FROM journal_entry ORDER BY seq"))
        rows = {table: conn.execute(sql).fetchall() for table, sql in VOUCHED.items()}
    finally:
        conn.close()
    return tokens, rows


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Original:
    folder = tmp_path_factory.mktemp("damaged-db") / "station"
    st = init_station(folder, "ST-DMG", clock=lambda: datetime(2026, 11, 1, 23, 0, tzinfo=UTC))
    load_demo_customers(st, count=30)
    # Seed 2 from 07:40 runs over four business days, with day closes and two reversals.
    outcomes = simulate(st, 200, seed=2, start=datetime(2026, 11, 2, 7, 40, tzinfo=st.timezone))
    st.close()  # checkpoints the WAL into station.db: the trials damage the one file
    assert outcomes["day_close"] >= 1 and outcomes.get("reversal", 0) >= 1, outcomes
    tokens, rows = read_journal(folder / "station.db")
    data = (folder / "station.db").read_bytes()
    spans = [(data.index(token.encode("ascii")), len(token), seq) for seq, token in tokens.items()]
    return Original(folder, tokens, rows, spans)


def damaged_copy(original: Original, tmp_path: Path, name: str, damage: Callable[[bytearray], bytes]) -> Path:
    folder = tmp_path / name
    shutil.copytree(original.folder, folder)
    path = folder / "station.db"
    path.write_bytes(damage(bytearray(path.read_bytes())))
    return folder


# -- what a trial may end as ----------------------------------------------------------------------------------------
RECOVERY_WORDS = "station restore --replace"


@dataclass(frozen=True)
class Outcome:
    """How ``station verify-journal`` ended on a damaged copy: ``kind`` ok, refused, broken, or None when it ended
    in no allowed way (``problem`` says how); ``lost``: entries missing or changed under a verdict of intact."""

    kind: str | None
    problem: str | None = None
    lost: int = 0
    bad_seq: int | None = None


def verify_outcome(original: Original, folder: Path) -> Outcome:
    """Run ``station verify-journal --json`` in this process and judge how it ended."""
    result = CliRunner().invoke(cli, ["verify-journal", "--data-dir", str(folder), "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return Outcome(None, "traceback:\n" + "".join(traceback.format_exception(result.exception)))
    if result.exit_code == 1 and not result.stdout.strip():
        if result.stderr.startswith("Error: ") and RECOVERY_WORDS in result.stderr:
            return Outcome("refused")
        return Outcome(None, f"exit 1 without a clear refusal: {result.stderr!r}")
    try:
        audit = json.loads(result.stdout)
    except ValueError:
        return Outcome(None, f"exit {result.exit_code}, not the JSON verdict: {result.output!r}")
    if result.exit_code == 1:
        if not audit["intact"] and isinstance(audit.get("bad_seq"), int) and audit.get("reason"):
            return Outcome("broken", bad_seq=audit["bad_seq"])
        return Outcome(None, f"exit 1 without BROKEN at seq N: {audit}")
    if result.exit_code != 0 or not audit["intact"]:
        return Outcome(None, f"exit {result.exit_code} with {audit}")
    tokens, rows = read_journal(folder / "station.db")
    lost = sum(tokens.get(seq) != token for seq, token in original.tokens.items())
    lost += len(tokens.keys() - original.tokens.keys())
    if lost:
        return Outcome(None, f"verified intact, but {lost} entries are missing or changed", lost)
    changed = [table for table in VOUCHED if rows[table] != original.rows[table]]
    if changed:
        return Outcome(None, f"verified intact, but rows of {changed} changed unnoticed")
    return Outcome("ok")


def open_problem(folder: Path) -> str | None:
    """Opening the station in this process: it opens, or ``open_database`` refuses with ``DatabaseDamaged`` (the
    CLI's own net must not be what saves it); else what it raised."""
    try:
        Station(folder).close()
    except DatabaseDamaged as exc:
        return None if RECOVERY_WORDS in str(exc) else f"DatabaseDamaged without the backup's word: {exc}"
    except Exception as exc:  # any other exception is the failure this trial looks for
        return "Station() raised:\n" + "".join(traceback.format_exception(exc))
    return None


def station_process(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The ``station`` command as its own process (the same interpreter, the same code)."""
    return subprocess.run([sys.executable, "-c", "from station.cli import cli; cli()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


def process_outcome(folder: Path, verified_ok: bool) -> str | None:
    """``station verify-journal`` and ``station status`` as processes: no traceback, and exit 1 with the clear
    message whenever the journal did not verify; None when both ended as allowed."""
    verify = station_process("verify-journal", "--data-dir", str(folder))
    status = station_process("status", "--data-dir", str(folder))
    for run in (verify, status):
        if "Traceback" in run.stderr:
            return f"{run.args[3:]}: traceback on stderr:\n{run.stderr}"
    if verified_ok:
        return None if verify.returncode == 0 else f"verify-journal exit {verify.returncode}: {verify.stderr!r}"
    if verify.returncode != 1 or not ("BROKEN at seq " in verify.stderr or RECOVERY_WORDS in verify.stderr):
        return f"verify-journal exit {verify.returncode} without BROKEN or the refusal: {verify.stderr!r}"
    if status.returncode not in (0, 1) or (status.returncode == 1 and not status.stderr.startswith("Error: ")):
        return f"status exit {status.returncode}: {status.stderr!r}"
    return None


def run_trials(original: Original, tmp_path: Path, fault: str, damages: list[tuple[str, Callable]],
               broken_at: list[int] | None = None) -> None:
    """Run each damage on its own copy; ``broken_at``: the seq each must be found BROKEN at (no other outcome)."""
    tally = Tally(fault)
    for number, (what, damage) in enumerate(damages):
        folder = damaged_copy(original, tmp_path, f"{fault}-{number}", damage)
        outcome = verify_outcome(original, folder)
        problem = open_problem(folder) or outcome.problem
        expected = None if broken_at is None else ("broken", broken_at[number])
        if problem is None and expected is not None and (outcome.kind, outcome.bad_seq) != expected:
            problem = f"{outcome.kind} at seq {outcome.bad_seq}, not BROKEN at seq {expected[1]}"
        if problem is None and number < SUBPROCESS_TRIALS[FULL]:
            problem = process_outcome(folder, verified_ok=outcome.kind == "ok")
        tally.add(f"{what} ({outcome.kind})", problem, outcome.lost)
        shutil.rmtree(folder)
    tally.record_and_check()


# -- the faults -----------------------------------------------------------------------------------------------------
def test_a_zeroed_page_is_refused_or_found(original, tmp_path):
    size = (original.folder / "station.db").stat().st_size
    conn = sqlite3.connect(original.folder / "station.db")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    rng = random.Random(13)
    pages = rng.sample(range(size // page_size), min(trials_of("zeroed_page"), size // page_size))

    def zero(page):
        def damage(data: bytearray) -> bytes:
            data[page * page_size:(page + 1) * page_size] = bytes(page_size)
            return bytes(data)
        return damage

    run_trials(original, tmp_path, "zeroed_page", [(f"page {page + 1} zeroed", zero(page)) for page in pages])


def flip(offset: int, bit: int):
    def damage(data: bytearray) -> bytes:
        data[offset] ^= 1 << bit
        return bytes(data)
    return damage


def test_a_bit_flipped_in_a_journal_token_is_broken_at_its_seq(original, tmp_path):
    rng = random.Random(29)
    damages, seqs = [], []
    for _ in range(trials_of("token_bit_flip")):
        start, length, seq = rng.choice(original.token_spans)
        offset, bit = start + rng.randrange(length), rng.randrange(8)
        damages.append((f"bit {bit} of byte {offset} (in the token of seq {seq})", flip(offset, bit)))
        seqs.append(seq)
    # Every byte of a token is signed (and base64url is decoded strictly): the flipped entry is the one found.
    run_trials(original, tmp_path, "token_bit_flip", damages, broken_at=seqs)


def test_a_bit_flipped_anywhere_else_is_refused_found_or_harmless(original, tmp_path):
    size = (original.folder / "station.db").stat().st_size
    in_tokens = set()
    for start, length, _seq in original.token_spans:
        in_tokens.update(range(start, start + length))
    elsewhere = [offset for offset in range(size) if offset not in in_tokens]
    rng = random.Random(31)
    damages = []
    for offset in rng.sample(elsewhere, trials_of("bit_flip_elsewhere")):
        bit = rng.randrange(8)
        damages.append((f"bit {bit} of byte {offset}", flip(offset, bit)))
    run_trials(original, tmp_path, "bit_flip_elsewhere", damages)


def test_a_truncated_database_is_refused_or_found(original, tmp_path):
    size = (original.folder / "station.db").stat().st_size
    rng = random.Random(37)
    cuts = sorted(rng.sample(range(1, size), trials_of("truncation")))
    run_trials(original, tmp_path, "truncation",
               [(f"cut to {cut} of {size} bytes", lambda data, cut=cut: bytes(data[:cut])) for cut in cuts])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lose_database(folder: Path, how: str) -> None:
    path = folder / "station.db"
    if how == "zero-length":
        path.write_bytes(b"")
    elif how == "missing":
        path.unlink()
    elif how == "replaced by an empty one":
        path.unlink()
        open_database(str(path)).close()
    elif how == "config missing":
        (folder / "config.json").unlink()


@pytest.mark.parametrize("how", ["zero-length", "missing", "replaced by an empty one", "config missing"])
def test_a_lost_database_is_refused_never_started_afresh(original, tmp_path, how):
    folder = tmp_path / "lost"
    shutil.copytree(original.folder, folder)
    lose_database(folder, how)
    before = sorted((path.name, path.stat().st_size) for path in folder.iterdir() if path.is_file())
    expected = DataFolderDamaged if how == "config missing" else DatabaseMissing
    with pytest.raises(expected, match="station restore --replace"):
        Station(folder)
    tally = Tally(f"lost_database: {how}")
    runner = CliRunner()
    commands = [["status"], ["verify-journal"], ["sync"], ["init", "--station-id", "ST-NEW"]]
    for command in commands:
        result = runner.invoke(cli, [*command, "--data-dir", str(folder)])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            tally.add(command[0], "traceback:\n" + "".join(traceback.format_exception(result.exception)))
        elif result.exit_code != 1 or not result.stderr.startswith("Error: "):
            tally.add(command[0], f"exit {result.exit_code}: {result.output!r}")
        elif command[0] != "init" and RECOVERY_WORDS not in result.stderr:
            tally.add(command[0], f"no word of the backup: {result.stderr!r}")
        else:
            tally.add(command[0], None)
    # `station serve` as the service runs it: it stops at once, exit 1, the message on stderr.
    serve = station_process("serve", "--data-dir", str(folder), "--port", str(free_port()), timeout=60)
    clear = serve.returncode == 1 and "Traceback" not in serve.stderr and RECOVERY_WORDS in serve.stderr
    tally.add("serve", None if clear else f"exit {serve.returncode}: {serve.stderr!r}")
    # Nothing was made afresh: no new database, no new journal, no new keys.
    assert sorted((path.name, path.stat().st_size) for path in folder.iterdir() if path.is_file()) == before
    tally.record_and_check()
