"""Backing up a station's data folder into one archive, and restoring it without forking the station's chain.

``station backup OUT`` writes a gzip-compressed tar, mode 0600 from the moment it exists (it holds the station's
private keys), of:

    manifest.json   format and version, station id, head seq and chain value, acked seq, schema version, created_at,
                    software version, and the SHA-256 and size of every other member
    station.db      a copy made with SQLite's online backup API in one step, i.e. under one read transaction: the
                    database as of one commit, while the station keeps serving and writing (WAL)
    config.json     station id, the bank's URL and pinned keys, device settings
    keys/NAME       every key file of the data folder (signing, encryption, UI session key)

``station restore`` checks everything in a temporary folder beside the target before the target changes: the
members are exactly the manifest's, regular files with plain names (no path, no link), sizes and hashes match; the
database passes ``PRAGMA integrity_check``, opens, and its journal verifies (``audit_journal``) and ends where the
manifest says. For an enrolled station the bank is asked for its signed head (``station.protocol.heads``, fresh for
a nonce): a backup that ends before the bank's acknowledged seq or before the station's last signed tail claim, or
whose entry there is not the bank's, is refused, since the device would write a second, different entry at a seq the
bank holds (a fork). The restored station forgets which downlink it applied last, so its first sync asks the bank for
everything again. Then the temporary folder is synced and renamed into place; a station already in the target
is renamed aside with a timestamp, never deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import zlib
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import requests
from joserfc.errors import JoseError

from station.bank_unlock import COUNTER_SETTING as UNLOCK_COUNTER_SETTING
from station.context import Station, StationNotInitialised
from station.db import DatabaseDamaged, SchemaMismatch, SchemaTooNew
from station.journal import audit_journal, journal_head
from station.protocol.heads import BankHead
from station.protocol.times import utc_text
from station.protocol.tokens import chain_hash, is_integer
from station.sync import ServerUnreachable, SyncRefused, fetch_bank_head

FORMAT = "station-kit-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "station.db"
CONFIG = "config.json"
KEYS = "keys"
RETIRED = f"{KEYS}/retired"
SIGNING_KEY = f"{KEYS}/signing.jwk"
#: A key file's name: plain, no path, not hidden (the writer's temporary files start with a dot). A retired key's
#: file is named by its kid, a base64url thumbprint, which may start with "-" or "_".
KEY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
#: Manifest, config and keys are small; anything larger is not a station's.
MAX_SMALL_BYTES = 1024 * 1024
CHUNK = 1024 * 1024
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BackupError(RuntimeError):
    """A backup that cannot be made, or an archive that cannot be restored; the message says why and what to do."""


class RestoreRefused(BackupError):
    """``station restore`` refused: nothing was written to the target."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    station_id: str
    head_seq: int
    acked_seq: int
    size: int


@dataclass(frozen=True)
class RestoreResult:
    target: Path
    station_id: str
    head_seq: int
    acked_seq: int
    bank: BankHead | None
    set_aside: Path | None


def software_version() -> str:
    """The installed station-kit release (written into each manifest)."""
    try:
        return metadata.version("station-kit")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- backup ---------------------------------------------------------------------------------------------------
def _snapshot_database(source: Path, copy: Path) -> dict:
    """Copy the live database with SQLite's online backup API, then check and describe the copy.

    ``backup()`` copies every page in one step, holding one read transaction on the source: the copy is the
    database as of one commit. In WAL mode that reader never blocks the station's writer, nor does the writer
    restart the copy. The copy is switched to a rollback journal so it is one self-contained file.
    """
    # Created here with mode 0600 (SQLite would make it 0644 less the umask); its journal files take its mode.
    os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(source, timeout=30)
    try:
        src.execute("PRAGMA query_only = 1")
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
            check = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            if check != ["ok"]:
                raise BackupError(f"The station database fails its integrity check ({'; '.join(check[:3])}): no "
                                  "backup made. Keep the last good backup and call the bank.")
            head = dst.execute("SELECT seq, token FROM journal_entry ORDER BY seq DESC LIMIT 1").fetchone()
            acked = dst.execute("SELECT value FROM setting WHERE key = 'acked_seq'").fetchone()
            schema = dst.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"Cannot copy the station database {source}: {exc}.") from exc
    finally:
        src.close()
    return {"head_seq": head[0] if head else 0, "head": chain_hash(head[1]) if head else None,
            "acked_seq": json.loads(acked[0]) if acked else 0, "schema_version": schema}


def _read_small(path: Path) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(MAX_SMALL_BYTES + 1)
    if len(data) > MAX_SMALL_BYTES:
        raise BackupError(f"{path} is larger than any station file should be: no backup made.")
    return data


def _small_members(data_dir: Path) -> dict[str, bytes]:
    """config.json and every regular key file (not links, not the writer's hidden temporary files)."""
    members = {CONFIG: _read_small(data_dir / CONFIG)}
    # keys/ and keys/retired/ (an old private key kept until the bank has the rotation that retired it).
    for folder in (KEYS, RETIRED):
        if not (data_dir / folder).is_dir():
            continue
        for path in sorted((data_dir / folder).iterdir()):
            if KEY_NAME.fullmatch(path.name) and stat.S_ISREG(path.lstat().st_mode):
                members[f"{folder}/{path.name}"] = _read_small(path)
    if SIGNING_KEY not in members:
        raise BackupError(f"{data_dir / SIGNING_KEY} is missing: no backup made.")
    return members


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_station(st: Station, out: str | os.PathLike, *, force: bool = False) -> BackupResult:
    """Write the backup archive of ``st`` to ``out`` (mode 0600); refuses an existing ``out`` unless ``force``.

    The archive is written to a private temporary folder beside ``out`` and renamed into place, so ``out`` is
    either the whole archive or absent (or, with ``force``, the previous file) and never readable by others.
    """
    out = Path(out)
    if out.is_dir():
        raise BackupError(f"{out} is a folder: give the archive's file name, e.g. {out / 'station-backup.tar.gz'}.")
    if out.exists() and not force:
        raise _exists(out)
    if not out.parent.is_dir():
        raise BackupError(f"The folder {out.parent} does not exist: create it first.")
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # mode 0700
    except OSError as exc:
        raise BackupError(f"Cannot write in {out.parent}: {exc.strerror}.") from exc
    try:
        snapshot = _snapshot_database(st.data_dir / DATABASE, work / DATABASE)
        small = _small_members(st.data_dir)
        members = {DATABASE: {"sha256": _file_digest(work / DATABASE), "size": (work / DATABASE).stat().st_size}}
        members.update({name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                        for name, data in small.items()})
        created = st.now()
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "station_id": st.station_id,
                    **snapshot, "created_at": utc_text(created), "software": software_version(),
                    "members": members}
        manifest_bytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
        mtime = int(created.timestamp())
        archive = work / "archive"
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                # The manifest first: a reader learns what to expect before the large database.
                tar.addfile(_tarinfo(MANIFEST, len(manifest_bytes), mtime), io.BytesIO(manifest_bytes))
                with open(work / DATABASE, "rb") as db_file:
                    tar.addfile(_tarinfo(DATABASE, members[DATABASE]["size"], mtime), db_file)
                for name, data in small.items():
                    tar.addfile(_tarinfo(name, len(data), mtime), io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        size = archive.stat().st_size
        _install_file(archive, out, force)
    except OSError as exc:
        raise BackupError(f"Cannot write the backup {out}: {exc.strerror or exc}.") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupResult(out, st.station_id, snapshot["head_seq"], snapshot["acked_seq"], size)


def _install_file(archive: Path, out: Path, force: bool) -> None:
    if force:
        os.replace(archive, out)
    else:
        try:
            # link() refuses an existing name atomically, where exists()-then-rename would race.
            os.link(archive, out)
        except FileExistsError as exc:
            raise _exists(out) from exc
        except OSError:
            # A file system without hard links (a FAT-formatted USB stick): checked just before, rename.
            if out.exists():
                raise _exists(out) from None
            os.rename(archive, out)
    _fsync_folder(out.parent)


def _exists(out: Path) -> BackupError:
    return BackupError(f"{out} already exists: refusing to overwrite it (add --force to replace it).")


# -- restore: the archive -------------------------------------------------------------------------------------
def _allowed_name(name: str) -> bool:
    if name in (MANIFEST, DATABASE, CONFIG):
        return True
    folder, _, key = name.rpartition("/")
    return folder in (KEYS, RETIRED) and KEY_NAME.fullmatch(key) is not None


def _check_members(members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """Every member a regular file with one of the names a backup has; no path out, no link, none twice."""
    found: dict[str, tarfile.TarInfo] = {}
    for member in members:
        name = member.name
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", name):
            raise RestoreRefused(f"The archive has a member {name!r} that points outside the data folder: "
                                 "it was not made by `station backup`. Nothing was restored.")
        if member.issym() or member.islnk():
            raise RestoreRefused(f"The archive's member {name!r} is a link: a backup holds plain files only. "
                                 "Nothing was restored.")
        if not member.isfile() or not _allowed_name(name):
            raise RestoreRefused(f"The archive has a member {name!r} that no station backup has. Nothing was "
                                 "restored.")
        if name in found:
            raise RestoreRefused(f"The archive holds {name!r} twice. Nothing was restored.")
        found[name] = member
    return found


def _damaged(archive: Path, exc: BaseException) -> RestoreRefused:
    return RestoreRefused(f"{archive} is damaged or cut short ({exc.__class__.__name__}: {exc}): use another "
                          "copy of the backup. Nothing was restored.")


_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path, limit: int) -> bytes:
    if member.size > limit:
        raise RestoreRefused(f"The archive's {member.name} is larger than a station's ever is. Nothing was restored.")
    try:
        return tar.extractfile(member).read()
    except _READ_ERRORS as exc:
        raise _damaged(archive, exc) from exc


def _parse_manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RestoreRefused("The archive's manifest.json is not JSON. Nothing was restored.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RestoreRefused("The archive's manifest.json is not a station backup's. Nothing was restored.")
    if manifest.get("version") != FORMAT_VERSION:
        raise RestoreRefused(f"This backup has format version {manifest.get('version')!r}; this software reads "
                             f"version {FORMAT_VERSION}. Install the release that made it "
                             f"({manifest.get('software', 'unknown')}) or newer. Nothing was restored.")
    members = manifest.get("members")
    well_formed = (
        isinstance(manifest.get("station_id"), str) and is_integer(manifest.get("head_seq"))
        and is_integer(manifest.get("acked_seq")) and isinstance(members, dict)
        and all(isinstance(item, dict) and isinstance(item.get("sha256"), str)
                and SHA256_HEX.fullmatch(item["sha256"]) and is_integer(item.get("size")) and item["size"] >= 0
                for item in members.values())
    )
    if not well_formed:
        raise RestoreRefused("The archive's manifest.json lacks fields a backup's has. Nothing was restored.")
    return manifest


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, archive: Path) -> str:
    """Copy one member to ``dest`` (a new file, mode 0600) and return its SHA-256."""
    digest = hashlib.sha256()
    source = tar.extractfile(member)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        while True:
            try:
                chunk = source.read(CHUNK)
            except _READ_ERRORS as exc:
                raise _damaged(archive, exc) from exc
            if not chunk:
                break
            digest.update(chunk)
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return digest.hexdigest()


def unpack_backup(archive: str | os.PathLike, staging: Path) -> dict:
    """Check ``archive`` and write its members into the empty folder ``staging``; returns the manifest.

    Refuses (:class:`RestoreRefused`) an archive that is not a gzip tar, is cut short, has a member with a path,
    a link or a name no backup has, or whose members differ from the manifest's list, sizes or hashes.
    """
    archive = Path(archive)
    try:
        tar = tarfile.open(archive, "r:gz")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise RestoreRefused(f"Cannot read {archive}: {exc.strerror}.") from exc
    except _READ_ERRORS as exc:
        raise RestoreRefused(f"{archive} is not a station backup (not a gzip tar archive). Nothing was "
                             "restored.") from exc
    with tar:
        try:
            members = _check_members(tar.getmembers())
        except _READ_ERRORS as exc:
            raise _damaged(archive, exc) from exc
        if MANIFEST not in members:
            raise RestoreRefused(f"{archive} has no manifest.json: it is not a station backup. Nothing was restored.")
        manifest = _parse_manifest(_read_member(tar, members.pop(MANIFEST), archive, MAX_SMALL_BYTES))
        listed = manifest["members"]
        if set(listed) != set(members):
            missing, extra = sorted(set(listed) - set(members)), sorted(set(members) - set(listed))
            raise RestoreRefused(f"The archive's members differ from its manifest (missing: {missing or 'none'}; "
                                 f"not listed: {extra or 'none'}). Nothing was restored.")
        for required in (DATABASE, CONFIG, SIGNING_KEY):
            if required not in members:
                raise RestoreRefused(f"The backup has no {required}. Nothing was restored.")
        (staging / KEYS).mkdir(mode=0o700)
        if any(name.startswith(f"{RETIRED}/") for name in members):
            (staging / RETIRED).mkdir(mode=0o700)
        for name, member in members.items():
            if member.size != listed[name]["size"] or (name != DATABASE and member.size > MAX_SMALL_BYTES):
                raise RestoreRefused(f"The archive's {name} is not the size its manifest says. Nothing was restored.")
            if _extract(tar, member, staging / name, archive) != listed[name]["sha256"]:
                raise RestoreRefused(f"The archive's {name} does not match its manifest's SHA-256: the backup is "
                                     "damaged or was changed. Use another copy. Nothing was restored.")
        try:
            # To the end of the gzip stream, so its length and CRC are checked too (a cut in its last bytes).
            while tar.fileobj.read(CHUNK):
                pass
        except _READ_ERRORS as exc:
            raise _damaged(archive, exc) from exc
    return manifest


# -- restore: the station in it -------------------------------------------------------------------------------
def _integrity(database: Path) -> None:
    try:
        conn = sqlite3.connect(database)
        try:
            check = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        check = [str(exc)]
    if check != ["ok"]:
        raise RestoreRefused(f"The backup's database fails its integrity check ({'; '.join(check[:3])}). Use another "
                             "backup. Nothing was restored.")


def open_backup_station(staging: Path, manifest: dict) -> Station:
    """The station of an unpacked backup, once its database is intact, its journal verifies, and both agree with
    the manifest; raises :class:`RestoreRefused`."""
    _integrity(staging / DATABASE)
    try:
        config = json.loads((staging / CONFIG).read_text(encoding="utf-8"))
        config_station = config["station_id"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise RestoreRefused("The backup's config.json is not a station's config. Nothing was restored.") from exc
    if config_station != manifest["station_id"]:
        raise RestoreRefused(f"The backup's config.json is of station {config_station!r}, its manifest says "
                             f"{manifest['station_id']!r}. Nothing was restored.")
    try:
        st = Station(staging, check_head=False)  # the whole journal is audited below, with a better message
    except (StationNotInitialised, DatabaseDamaged, SchemaTooNew, SchemaMismatch) as exc:
        raise RestoreRefused(f"The backup's station does not open: {exc} Nothing was restored.") from exc
    except (JoseError, ValueError, KeyError, TypeError, OSError) as exc:
        raise RestoreRefused(f"The backup's keys or config do not load ({exc.__class__.__name__}). Nothing was "
                             "restored.") from exc
    try:
        audit = audit_journal(st)
        if not audit.intact:
            problem = audit.problems[0]
            raise RestoreRefused(f"The backup's journal does not verify: seq {problem.seq}: {problem.reason}. It is "
                                 "damaged or was changed: use another backup. Nothing was restored.")
        head_seq, head_token = journal_head(st)
        if head_seq != manifest["head_seq"] or chain_hash(head_token) != manifest.get("head"):
            raise RestoreRefused(f"The backup's journal ends at seq {head_seq}, its manifest says "
                                 f"{manifest['head_seq']}. Nothing was restored.")
    except BaseException:
        st.close()
        raise
    return st


def _keep_unlock_counter(target: Path, st: Station) -> None:
    """Keep the last unlock code the replaced station used (``station.bank_unlock``), when it is the same station
    and its database still reads: a backup taken before a code was typed would otherwise take that code again, as
    the bank issued it once and it was read out over the phone. A database that does not read is left alone (the
    bank's staff issue the next code, at a higher counter, either way)."""
    try:
        if json.loads((target / CONFIG).read_text(encoding="utf-8")).get("station_id") != st.station_id:
            return
        with closing(sqlite3.connect(f"file:{target / DATABASE}?mode=ro", uri=True)) as old:
            row = old.execute("SELECT value FROM setting WHERE key = ?", (UNLOCK_COUNTER_SETTING,)).fetchone()
        replaced = json.loads(row[0]) if row else 0
    except (OSError, ValueError, AttributeError, sqlite3.Error):
        return
    if is_integer(replaced) and replaced > int(st.setting(UNLOCK_COUNTER_SETTING, 0)):
        st.set_setting(UNLOCK_COUNTER_SETTING, replaced)


def _what_to_do(st: Station) -> str:
    url = st.config["server"].get("url", "URL")
    return (
        "What to do instead:\n"
        "  1. If the old device's SD card still reads, bring everything it recorded to the bank first: with the card "
        f"in a reader, run `station export-journal --data-dir CARD/station-data OUT`, then at the bank "
        f"`sync-server journal import OUT --station {st.station_id}`.\n"
        f"  2. Then (or if the card is lost) ask the bank for a replacement enrollment code "
        f"(`sync-server station replace {st.station_id}`) and enroll this device with it: "
        f"`station enroll --server {url} --code CODE`. It continues the chain from the bank's head, so nothing is "
        "lost or counted twice."
    )


def check_with_bank(st: Station, http: requests.Session | None = None) -> BankHead | None:
    """Refuse (:class:`RestoreRefused`) a backup the bank's signed head shows to be stale or forked; the head.

    ``None`` for a station that never enrolled (no bank to ask). Stale: the journal ends before the bank's acked
    seq, or before the seq of the station's newest signed tail claim (the old device went further than this
    backup, and told the bank so). Forked: the backup's entry at either seq is not the one the bank holds.
    """
    if not st.config.get("server"):
        return None
    try:
        bank = fetch_bank_head(st, http)
    except ServerUnreachable as exc:
        raise _bank_unavailable(st, str(exc)) from exc
    except SyncRefused as exc:
        if str(exc.problem.get("type")).endswith(":unknown-station"):
            raise RestoreRefused(f"{exc} Check that this is a backup of one of this bank's stations. Nothing was "
                                 "restored.") from exc
        # A server error, an answer that does not verify, or a bank whose software has no head check yet.
        raise _bank_unavailable(st, str(exc)) from exc
    if bank.status == "revoked":
        raise RestoreRefused(f"The bank has revoked station {st.station_id}: a restored device could not sync. "
                             "Ask the bank. Nothing was restored.")
    if bank.kid is not None and bank.kid not in {key["kid"] for key in st.public_jwks()["keys"]}:
        # Not a key of this backup: the bank enrolled a replacement device for the station (its entries go on from
        # the bank's head under that key), so this device's next entry would be refused.
        raise RestoreRefused(
            f"Refused: the bank expects station {st.station_id}'s next entry to be signed with key {bank.kid}, which "
            "this backup does not hold: a replacement device has been enrolled for the station. Use that device, or "
            "ask the bank for a new replacement code (`sync-server station replace`). Nothing was restored.")
    head_seq, _ = journal_head(st)
    checks = [(bank.acked_seq, bank.head, f"the bank holds its journal up to seq {bank.acked_seq}")]
    if bank.tail_seq is not None:
        checks.append((bank.tail_seq, bank.tail_head,
                       f"the station told the bank its journal had reached seq {bank.tail_seq}"))
    for seq, head, known in checks:
        if seq == 0:
            continue
        if seq > head_seq:
            raise RestoreRefused(
                f"Refused: this backup of station {st.station_id} ends at seq {head_seq}, but {known}. The device "
                "would write new, different entries at seqs the bank already knows (a fork): the bank would refuse "
                f"them and stop the station. Nothing was restored.\n{_what_to_do(st)}")
        if chain_hash(_token_at(st, seq)) != head:
            raise RestoreRefused(
                f"Refused: this backup of station {st.station_id} differs from the bank's copy: its entry at seq "
                f"{seq} is not the one the bank holds (the journals have forked). Nothing was restored.\n"
                f"{_what_to_do(st)}")
    return bank


def _token_at(st: Station, seq: int) -> str:
    return st.db.execute_sql("SELECT token FROM journal_entry WHERE seq = ?", (seq,)).fetchone()[0]


def _bank_unavailable(st: Station, reason: str) -> RestoreRefused:
    return RestoreRefused(
        f"Refused: cannot get the bank's head of station {st.station_id} ({reason.rstrip('.')}). Without it, a "
        "backup older than what the bank holds cannot be told apart: restoring one would fork the chain, and the "
        "bank would refuse everything this device records and stop the station. Connect this device to the network "
        "and run the restore again. Only if you are sure that no entry of this station was recorded after this "
        "backup (the old device never served again after it), add --without-bank. Nothing was restored.")


# -- restore: the target folder -------------------------------------------------------------------------------
def database_in_use(database: Path) -> bool:
    """True when another connection (``station serve``, ``station sync``) has the database open: a WAL-mode
    connection keeps a shared lock on the file while open, so an exclusive lock is refused."""
    if not database.exists():
        return False
    try:
        conn = sqlite3.connect(database, timeout=0)
    except sqlite3.Error:
        return False
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.rollback()
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc)
    except sqlite3.DatabaseError:
        return False  # damaged: nothing serves from it
    finally:
        conn.close()


def _check_target(target: Path, replace: bool) -> bool:
    """Whether ``target`` holds something to move aside; refuses what restore must not touch."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise RestoreRefused(f"{target} is not a folder. Nothing was restored.")
    if not target.parent.is_dir():
        raise RestoreRefused(f"The folder {target.parent} does not exist: create it first. Nothing was restored.")
    if not target.exists() or not any(target.iterdir()):
        return False
    holds = "a station" if (target / CONFIG).exists() or (target / DATABASE).exists() else "files"
    if not replace:
        raise RestoreRefused(f"{target} already holds {holds}: refusing to overwrite it. Add --replace to keep it "
                             f"aside (renamed {target.name}.replaced-TIME, never deleted) and restore in its place.")
    if database_in_use(target / DATABASE):
        raise RestoreRefused(f"The station in {target} is running (its database is open): stop it first "
                             "(`sudo systemctl stop station`), then restore again. Nothing was restored.")
    return True


def _sync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (the Station closed: nothing writes there)."""
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            _fsync_folder(path)
    _fsync_folder(folder)


def _give_to(folder: Path, owner: tuple[int, int] | None, target: Path) -> None:
    """Give ``folder`` and everything in it to ``owner`` (uid, gid), when that is not who runs the restore."""
    if owner is None or owner == (os.geteuid(), os.getegid()):
        return
    try:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, *owner, follow_symlinks=False)
    except PermissionError as exc:
        raise RestoreRefused(f"{target} belongs to another user: run the restore as root (sudo) or as that user. "
                             "Nothing was restored.") from exc


def _aside_name(target: Path, now: datetime) -> Path:
    base = target.with_name(f"{target.name}.replaced-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def restore_backup(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    *,
    replace: bool = False,
    without_bank: bool = False,
    http: requests.Session | None = None,
    now: datetime | None = None,
) -> RestoreResult:
    """Restore ``archive`` into the data folder ``target``, or refuse (:class:`RestoreRefused`) with nothing written.

    Everything is checked in a temporary folder beside ``target`` (see the module docstring), which is then
    renamed into place; with ``replace`` a station already in ``target`` is first renamed aside, never deleted.
    ``without_bank`` skips asking the bank for its head (the risk is the caller's: see docs/operations.md).
    """
    target = Path(target)
    occupied = _check_target(target, replace)
    # The restored folder belongs to whoever owned the folder it takes the place of (run as root on a device,
    # the data folder stays the station user's).
    owner = (target.stat().st_uid, target.stat().st_gid) if target.is_dir() else None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))  # mode 0700
    except OSError as exc:
        raise RestoreRefused(f"Cannot write in {target.parent}: {exc.strerror}. Nothing was restored.") from exc
    try:
        manifest = unpack_backup(archive, staging)
        st = open_backup_station(staging, manifest)
        try:
            bank = None if without_bank else check_with_bank(st, http)
            # The restored station asks the bank for its whole downlink again at its first sync (docs/protocol.md,
            # "Downlink versions"), whatever it had applied when the backup was taken.
            st.delete_setting("downlink_version")
            if occupied:
                _keep_unlock_counter(target, st)
            head_seq, _ = journal_head(st)
            acked_seq = st.setting("acked_seq", 0)
            station_id = st.station_id
        finally:
            st.close()
        _give_to(staging, owner, target)
        _sync_tree(staging)
        set_aside = _aside_name(target, now or datetime.now(UTC)) if occupied else None
        _put_in_place(staging, target, set_aside)
    except OSError as exc:
        raise RestoreRefused(f"Cannot write in {target.parent}: {exc.strerror or exc}. Nothing was restored.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when it was renamed into place
    return RestoreResult(target, station_id, head_seq, acked_seq, bank, set_aside)


def _put_in_place(staging: Path, target: Path, set_aside: Path | None) -> None:
    """Rename the checked folder into place, the old one aside first; put the old one back if that fails."""
    if set_aside is not None:
        os.rename(target, set_aside)
    try:
        os.rename(staging, target)  # onto an empty folder, too (rename replaces an empty directory)
    except OSError:
        if set_aside is not None:
            os.rename(set_aside, target)
        raise
    _fsync_folder(target.parent)
