"""The station's receipt printer as a device: its settings, the connection, its status, one job at a time.

Transport only: a job is a list of pages, each a function that draws on an open python-escpos printer (the
layout is ``station.receipt_layout``, what a job prints is ``station.printing``). A printer that is missing or
out of paper raises a :class:`PrinterError` whose message tells the agent the operation is recorded and can be
printed again; the technical cause goes to the log (logger ``station.printer``), never to the screen.

The printer is set by the ``printer`` key of the station's ``config.json`` (see ``docs/operations.md``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from escpos.constants import RT_STATUS_ONLINE
from escpos.escpos import Escpos
from escpos.exceptions import Error as EscposError
from escpos.printer import Dummy, File, Network, Serial, Usb

from station.context import Station
from station.errors import N_, StationError
from station.storage import is_storage_full, note_storage_full

log = logging.getLogger(__name__)

#: One printer per station, one station per process: jobs from two request threads must not interleave.
_PRINTER_LOCK = threading.Lock()

PRINTER_KINDS = ("usb", "serial", "network", "file", "dummy")
#: With no ``printer`` key: the Linux ``usblp`` device of a USB receipt printer, the usual set-up of a station.
DEFAULT_PRINTER = {"kind": "file", "path": "/dev/usb/lp0"}
#: A python-escpos profile of a generic 58 mm printer (384 dots, 32 columns).
DEFAULT_PROFILE = "POS-5890"
DEFAULT_TIMEOUT_S = {"usb": 10, "serial": 5, "network": 10}
#: Settings that are whole numbers (USB ids and endpoints may be written in hex, "0x0416").
INTEGER_SETTINGS = ("vendor_id", "product_id", "in_ep", "out_ep", "port", "baudrate")

# linux/lp.h: printer port ioctls (served by the lp and usblp drivers) and the status bit for paper out.
LPABORT = 0x0604
LPGETSTATUS = 0x060B
LP_POUTPA = 0x20

# GS V 66 0: feed to the cutter and cut. python-escpos's profile-driven cut() sends nothing on 58 mm profiles that
# list no cutter, so the command is sent as is; a printer without a cutter ignores it.
FEED_AND_CUT = b"\x1dVB\x00"

#: A page of a job: draws on the open printer, without the cut.
Page = Callable[[Escpos], None]


# -- errors -----------------------------------------------------------------------------------------------
class PrinterError(StationError):
    """The receipt did not print. ``detail`` is the technical cause, for the log, never for the screen."""

    code = "printer_error"
    template = N_("The printer did not print. The operation is recorded; check the printer and print again.")

    def __init__(self, template: str | None = None, *, detail: str = "", **params):
        super().__init__(template, **params)
        self.detail = detail


class PrinterUnavailable(PrinterError):
    code = "printer_unavailable"
    template = N_("The printer is not connected or switched off. The operation is recorded; print again when it "
                  "is ready.")


class PrinterOutOfPaper(PrinterError):
    code = "printer_out_of_paper"
    template = N_("The printer is out of paper. The operation is recorded; load a new roll and print again.")


class PrinterStorageFull(PrinterError):
    code = "printer_storage_full"
    template = N_("Storage is full: the receipt could not be written for the printer. The operation is recorded; "
                  "call the technician.")


class PrinterMisconfigured(PrinterError):
    code = "printer_misconfigured"
    template = N_("The printer settings of this station are not valid (%(problem)s). Ask the technician to fix "
                  "them; the operation is recorded.")


@dataclass(frozen=True)
class PrintJob:
    """What a print did: ``paper_low`` when the near-end sensor tripped; ``output`` the bytes a dummy got."""

    kind: str
    paper_low: bool
    output: bytes | None = None


# -- configuration ----------------------------------------------------------------------------------------
def _int(value, name: str) -> int:
    """An integer setting, also written as "0x0416" (USB ids are quoted in hex everywhere)."""
    try:
        return value if isinstance(value, int) and not isinstance(value, bool) else int(str(value), 0)
    except ValueError:
        raise PrinterMisconfigured(problem=f"{name} must be a number") from None


def printer_settings(st: Station) -> dict:
    """The station's printer settings: ``config.json``'s ``printer`` object, checked, with defaults filled."""
    raw = st.config.get("printer", DEFAULT_PRINTER)
    if not isinstance(raw, dict):
        raise PrinterMisconfigured(problem="printer must be an object")
    settings = dict(raw)
    kind = settings.get("kind")
    if kind not in PRINTER_KINDS:
        raise PrinterMisconfigured(problem=f"kind must be one of {', '.join(PRINTER_KINDS)}")
    required = {"usb": ("vendor_id", "product_id"), "serial": ("device",), "network": ("host",), "file": ("path",)}
    for key in required.get(kind, ()):
        if not settings.get(key):
            raise PrinterMisconfigured(problem=f"a {kind} printer needs {key}")
    for key in INTEGER_SETTINGS:
        if key in settings:
            _int(settings[key], key)  # refused now, not at the first receipt
    settings.setdefault("profile", DEFAULT_PROFILE)
    settings.setdefault("cut", True)
    if kind in DEFAULT_TIMEOUT_S:
        timeout = settings.setdefault("timeout", DEFAULT_TIMEOUT_S[kind])
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
            raise PrinterMisconfigured(problem="timeout must be a number of seconds")
    return settings


class _AppendingFile(File):
    """A File printer that appends: a spool file keeps every job, and a missing device node is never created.

    On a Linux printer port (``usblp``'s /dev/usb/lp0, ``lp``'s /dev/lp0) it also asks the driver for the paper
    status, and sets LPABORT: without it a write to a printer out of paper waits forever (the station would hang
    mid-receipt); with it the write fails with ENOSPC, which becomes PrinterOutOfPaper.
    """

    def open(self, raise_not_found: bool = True) -> None:
        self.device = open(self.devfile, "ab")
        with suppress(OSError):  # ENOTTY: a plain file, not a printer port
            fcntl.ioctl(self.device.fileno(), LPABORT, 1)

    def port_status(self) -> int | None:
        """The printer port's status byte (LP_* bits of linux/lp.h), or None where the file is no printer port."""
        try:
            raw = fcntl.ioctl(self.device.fileno(), LPGETSTATUS, bytes(4))
        except OSError:
            return None
        return int.from_bytes(raw, sys.byteorder)


class _Network(Network):
    """A Network printer whose failed connect closes its socket (python-escpos 3.1 leaks it, a ResourceWarning)."""

    def open(self, raise_not_found: bool = True) -> None:
        self.device = socket.create_connection((self.host, self.port), timeout=self.timeout)


def _file_path(st: Station, settings: dict) -> Path:
    """A ``file`` printer's path: a printer port, or a spool file (relative to the data folder)."""
    path = Path(settings["path"])
    return path if path.is_absolute() else st.data_dir / path


def _is_spool_file(st: Station, settings: dict) -> bool:
    """The printer is a plain file on a disk (a spool), not a printer port: ENOSPC there means the disk is full."""
    return settings["kind"] == "file" and not _file_path(st, settings).is_char_device()


def _make_printer(st: Station, settings: dict) -> Escpos:
    kind, profile = settings["kind"], settings["profile"]
    if kind == "dummy":
        return Dummy(profile=profile)
    if kind == "file":
        path = _file_path(st, settings)
        # Opening a missing /dev node for writing would create a plain file there and "print" into it; /dev/shm is
        # a folder of plain files (tmpfs), no device nodes.
        if path.parts[:2] == ("/", "dev") and path.parts[2:3] != ("shm",) and not path.exists():
            raise PrinterUnavailable(detail=f"{path} does not exist")
        return _AppendingFile(str(path), profile=profile)
    if kind == "network":
        return _Network(settings["host"], _int(settings.get("port", 9100), "port"), timeout=settings["timeout"],
                        profile=profile)
    if kind == "serial":
        return Serial(settings["device"], baudrate=_int(settings.get("baudrate", 9600), "baudrate"),
                      timeout=settings["timeout"], profile=profile)
    options = {key: _int(settings[key], key) for key in ("in_ep", "out_ep") if key in settings}
    return Usb(_int(settings["vendor_id"], "vendor_id"), _int(settings["product_id"], "product_id"),
               timeout=int(settings["timeout"] * 1000), profile=profile, **options)


@contextmanager
def _printer_errors(spool: bool) -> Iterator[None]:
    """Turn whatever a connection raises into a PrinterError the UI can show (``spool``: the printer is a file)."""
    try:
        yield
    except PrinterError:
        raise
    except OSError as exc:  # pyusb's USBError and pyserial's SerialException are OSErrors too
        if spool and is_storage_full(exc):
            raise PrinterStorageFull(detail=str(exc)) from exc
        # Linux's usblp driver answers a write with ENOSPC when the printer reports paper out.
        if exc.errno == errno.ENOSPC:
            raise PrinterOutOfPaper(detail=str(exc)) from exc
        raise PrinterUnavailable(detail=f"{exc.__class__.__name__}: {exc}") from exc
    except EscposError as exc:
        raise PrinterUnavailable(detail=f"{exc.__class__.__name__}: {exc}") from exc


def _can_answer(printer: Escpos) -> bool:
    """Only connections that can read back (USB, serial) can ask the printer itself for its status."""
    return type(printer)._read is not Escpos._read


def _check_ready(printer: Escpos) -> bool:
    """Refuse a printer that reports no paper or offline; return True when the paper is nearly out.

    A printer that does not answer (empty reply or a read timeout) is taken as ready: refusing to print
    because a status query went unanswered would be worse than trying.
    """
    if isinstance(printer, _AppendingFile):
        status = printer.port_status()
        # Only the paper bit is trusted: cheap printers report the other port bits unreliably.
        if status is not None and status & LP_POUTPA:
            raise PrinterOutOfPaper(detail=f"printer port status {status:#04x}: paper out")
        return False
    if not _can_answer(printer):
        return False
    try:
        paper = printer.paper_status()
        online = printer.query_status(RT_STATUS_ONLINE)
    except OSError as exc:
        log.info("printer status unknown: %s", exc)
        return False
    if paper == 0:
        raise PrinterOutOfPaper(detail="paper sensor: no paper")
    if online and online[0] & 0x08:
        raise PrinterUnavailable(detail="printer reports offline (cover open or error)")
    return paper == 1


def _open(st: Station, settings: dict) -> Escpos:
    try:
        printer = _make_printer(st, settings)
        printer.open()
    except (RuntimeError, ValueError) as exc:  # pyusb/pyserial not installed, or no libusb backend
        raise PrinterUnavailable(detail=f"{exc.__class__.__name__}: {exc}") from exc
    if settings["kind"] == "serial":
        # pyserial writes block forever by default; a printer unplugged mid-job must not hang the station.
        printer.device.write_timeout = settings["timeout"]
    return printer


def run_job(st: Station, pages: list[Page]) -> PrintJob:
    """Open the configured printer, check it, print each page followed by a cut, close it."""
    settings = printer_settings(st)
    printer = None
    try:
        with _PRINTER_LOCK, _printer_errors(_is_spool_file(st, settings)):
            printer = _open(st, settings)
            paper_low = _check_ready(printer)
            for page in pages:
                page(printer)
                if settings["cut"]:
                    printer._raw(FEED_AND_CUT)
                else:
                    printer.print_and_feed(4)  # past the tear bar
    except PrinterError as exc:
        log.warning("printing failed (%s): %s", exc.code, exc.detail)
        if isinstance(exc, PrinterStorageFull):
            note_storage_full(st, "printing to the spool file", exc.__cause__)
        raise
    finally:
        if printer is not None:
            _close_quietly(printer)
    if paper_low:
        log.warning("printer paper is nearly out")
    output = printer.output if isinstance(printer, Dummy) else None
    return PrintJob(kind=settings["kind"], paper_low=paper_low, output=output)


def _close_quietly(printer: Escpos) -> None:
    try:
        printer.close()
    except (OSError, EscposError, RuntimeError) as exc:
        log.info("closing the printer failed: %s", exc)
