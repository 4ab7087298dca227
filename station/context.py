"""The station's data folder and its runtime context.

The data folder (``--data-dir`` / ``STATION_DATA_DIR``) holds ``station.db``, ``config.json`` and
``keys/`` (files mode 0600). A :class:`Station` is the open database, the signing key and the clock that the
operations work with. Every public function takes the station; the models reach its database only inside
``with st.bound():`` (or ``st.write()``), which binds it for the current thread or context alone, so several
stations (tests) and several waitress threads never see each other's database.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey
from peewee import OperationalError

from station.db import RECOVERY, DatabaseDamaged, Setting, bound, damaged, open_database
from station.errors import StationBusy, StorageFull
from station.keys import (
    SIGNING_KEY_FILE,
    KeyMissing,
    current_signer,
    finish_rotation,
    kid_at,
    private_key_for,
    public_keys,
)
from station.protocol.policy import merged_policy
from station.protocol.private_files import write_private_file
from station.protocol.tokens import Signer, TokenError, generate_signing_key, key_id, verify_token
from station.storage import is_storage_full, note_storage_full

DATA_DIR_ENV = "STATION_DATA_DIR"
DEFAULT_DATA_DIR = "station-data"
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def boot_clock() -> tuple[str, float]:
    """(this boot's id, seconds since boot): a clock that setting the date cannot move, for waits that must last
    (``station.agents``' back-off after wrong PINs). A reboot changes the id; without one (not Linux), each
    process counts as a boot of its own."""
    try:
        boot_id = BOOT_ID_FILE.read_text(encoding="ascii").strip()
    except OSError:
        boot_id = f"process-{os.getpid()}"
    seconds = time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()
    return boot_id, seconds


class StationNotInitialised(RuntimeError):
    """The data folder has no station in it yet."""


class DataFolderDamaged(DatabaseDamaged):
    """Part of a station's data folder is missing or unreadable (its config or signing key): refused like a damaged
    database, never taken for an empty folder (that would enroll again over the station's keys)."""


#: The files whose presence shows that a data folder holds a station (``holds_station``).
STATION_FILES = ("config.json", "station.db", SIGNING_KEY_FILE)


def holds_station(data_dir: str | os.PathLike) -> bool:
    """True when any of a station's files is in ``data_dir``: a new station must not be made there."""
    return any((Path(data_dir) / name).exists() for name in STATION_FILES)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


class Station:
    """An opened station: database, keys, config and clock."""

    def __init__(self, data_dir: str | os.PathLike, *, clock: Callable[[], datetime] | None = None,
                 new: bool = False, check_head: bool = True):
        """Open the station in ``data_dir``. ``new``: it is being made now (``init_station``, ``enroll_station``), so
        its database may not exist yet; otherwise a missing or empty database is refused (``DatabaseMissing``).
        ``check_head``: refuse a journal whose last entry does not verify (``check_journal_head``); off only where every
        entry is verified next, with a better message (``station verify-journal``, ``station restore``)."""
        self.data_dir = Path(data_dir)
        config_path = self.data_dir / "config.json"
        if not config_path.exists():
            if holds_station(self.data_dir):
                raise DataFolderDamaged(f"{config_path} is missing, but the folder holds a station's database or "
                                        f"keys. {RECOVERY}")
            raise StationNotInitialised(
                f"No station in {self.data_dir}: run `station init --data-dir {self.data_dir} --station-id ID` "
                "(or `station enroll`) first."
            )
        try:
            self.config = json.loads(config_path.read_text(encoding="utf-8"))
            self.station_id: str = self.config["station_id"]
            self.signing_key = OKPKey.import_key(
                json.loads((self.data_dir / SIGNING_KEY_FILE).read_text(encoding="utf-8"))
            )
        except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
            raise DataFolderDamaged(f"The station's config or signing key in {self.data_dir} does not read "
                                    f"({exc.__class__.__name__}). {RECOVERY}") from exc
        self.db = open_database(str(self.data_dir / "station.db"), existing=not new)
        try:
            self.signing_key = finish_rotation(self.data_dir, self.db, self.signing_key)
            if check_head:
                self.check_journal_head()
        except BaseException:
            self.db.close()
            raise
        self.signer = Signer(self.signing_key)
        self.clock = clock or (lambda: datetime.now(UTC))
        #: What waits are measured on (``boot_clock``); a test may put its own in its place.
        self.boot_clock: Callable[[], tuple[str, float]] = boot_clock
        self._local = threading.local()
        self._generation = 0
        #: Held by whatever talks to the bank about the outbox in this process (``station.sync.sync_once``: the
        #: scheduler's sync, "sync now", the push after an online operation), so two never send at once.
        self.sync_lock = threading.RLock()
        #: (seq read up to, key spans): ``station.keys.station_key_spans``'s cache of the journal's keys.
        self._key_spans: tuple[int, list[tuple[int, str]]] = (0, [])
        #: When a write first failed for want of room (``station.storage``), until space is back; None otherwise.
        self.storage_full_since: datetime | None = None
        #: Agent sessions logged in while the storage was full, which could not be saved (``station.agents``).
        self.unsaved_sessions: dict[str, dict] = {}
        #: Sessions ended while the storage was full, whose records could not be deleted (``station.agents``).
        self.ended_sessions: set[str] = set()
        #: Wrong PINs and unlock codes that could not be saved for want of room, per person (``station.agents``).
        self.unsaved_failures: dict[str, int] = {}

    @contextmanager
    def write(self) -> Iterator[None]:
        """One IMMEDIATE write transaction; waiting past the busy timeout is a StationBusy refusal, not a crash.

        Another writer (a long ``station sync`` in a second process, say) can hold the database for a while; the
        operation then records nothing and the person is asked to try again. A full disk rolls the whole
        transaction back and is a StorageFull refusal (``station.storage``). The station is bound for the block.
        """
        try:
            with self.bound(), self.db.atomic():
                yield
        except OperationalError as exc:
            if is_storage_full(exc):
                note_storage_full(self, "a write to the database", exc)
                raise StorageFull() from exc
            if "locked" in str(exc) or "busy" in str(exc):
                raise StationBusy() from exc
            raise

    def check_journal_head(self) -> None:
        """Refuse (``DatabaseDamaged``) a journal whose last entry does not verify with the station's keys or is not
        stored at its seq: the next entry would chain onto it, and the bank would refuse everything from there on.

        A bit flipped inside a record, or a cut in the file's last page, passes ``PRAGMA integrity_check``; one
        signature at every start catches it where it matters most (``station verify-journal`` checks every entry)."""
        row = self.db.execute_sql(
            "SELECT seq, CAST(token AS BLOB) FROM journal_entry ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return
        seq, token = row[0], row[1].decode("ascii", errors="replace")
        try:
            payload = verify_token(token, self.keyset())
        except TokenError as exc:
            raise damaged(str(self.data_dir / "station.db"),
                          f"the journal's last entry, seq {seq}, does not verify: {exc}") from exc
        if payload.get("seq") != seq:
            raise damaged(str(self.data_dir / "station.db"),
                          f"the journal's last entry is stored at seq {seq!r} but carries seq {payload.get('seq')!r}")

    def update_config(self, key: str, value) -> None:
        """Set one key of ``config.json`` (written atomically, mode 0600) and of the running config."""
        self.config[key] = value
        write_private_file(self.data_dir / "config.json", json.dumps(self.config, indent=2, ensure_ascii=False))

    def bound(self):
        """A context manager that points the models at this station's database, in this context only (nests)."""
        return bound(self.db)

    def close(self) -> None:
        self.db.close()

    def now(self) -> datetime:
        return self.clock()

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.policy["timezone"])

    def local_date(self, moment: datetime | None = None) -> date:
        return (moment or self.now()).astimezone(self.timezone).date()

    def _settings(self) -> tuple[dict, dict]:
        """(settings, policy), re-read only when the database changed under this thread's connection.

        ``PRAGMA data_version`` changes when any other connection (thread or process, e.g. ``station sync``)
        commits; ``_generation`` covers this process's own ``set_setting``. Callers must not mutate the dicts.
        """
        conn = self.db.connection()
        key = (conn.execute("PRAGMA data_version").fetchone()[0], self._generation)
        cache = getattr(self._local, "cache", None)
        if cache is None or cache[0] != key:
            settings = {}
            for name, value in conn.execute("SELECT key, value FROM setting"):
                try:
                    settings[name] = json.loads(value)
                except ValueError as exc:  # never written by this software: the file is damaged
                    raise damaged(str(self.data_dir / "station.db"), f"setting {name!r} is not JSON") from exc
            cache = (key, settings, merged_policy(settings.get("policy")))
            self._local.cache = cache
        return cache[1], cache[2]

    def setting(self, key: str, default=None):
        return self._settings()[0].get(key, default)

    def set_setting(self, key: str, value) -> None:
        with self.bound():
            Setting.insert(key=key, value=value).on_conflict(
                conflict_target=[Setting.key], update={Setting.value: value}
            ).execute()
        self._generation += 1

    def delete_setting(self, key: str) -> None:
        """Remove one setting (nothing happens when it is not there)."""
        with self.bound():
            Setting.delete().where(Setting.key == key).execute()
        self._generation += 1

    @property
    def policy(self) -> dict:
        """The offline risk policy in force (defaults overlaid with the bank's last downlink)."""
        return self._settings()[1]

    def public_jwks(self) -> dict:
        """Every public key this device has signed with (``station.keys``): its receipts verify with these."""
        return {"keys": public_keys(self.data_dir, self.signing_key)}

    def signer_for(self, seq: int) -> Signer:
        """The signer of the key that signs entry ``seq`` (a batch ending at N is signed with the key of N + 1)."""
        current_signer(self)  # another process may have rotated the key
        kid = kid_at(self, seq) or key_id(self.signing_key)
        key = private_key_for(self.data_dir, self.signing_key, kid)
        if key is None:
            raise KeyMissing(f"the private key {kid}, which signs seq {seq}, is not on this device")
        return self.signer if key is self.signing_key else Signer(key)

    def keyset(self) -> KeySet:
        return KeySet.import_key_set(self.public_jwks())


def bound_station(function):
    """Decorator for a public function whose first argument is the station: runs it with the station bound."""

    @functools.wraps(function)
    def with_station(st: Station, *args, **kwargs):
        with st.bound():
            return function(st, *args, **kwargs)

    return with_station


def create_station_files(data_dir: str | os.PathLike, station_id: str, **config) -> Path:
    """Write a new data folder's signing key and config; refuses to overwrite an existing station."""
    data_dir = Path(data_dir)
    if holds_station(data_dir):
        raise FileExistsError(f"{data_dir} already holds a station; refusing to overwrite its keys.")
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key()
    write_private_file(data_dir / SIGNING_KEY_FILE, json.dumps(key.as_dict(private=True)))
    write_private_file(
        data_dir / "config.json",
        json.dumps({"station_id": station_id, **config}, indent=2, ensure_ascii=False),
    )
    return data_dir

