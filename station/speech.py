"""The confirm screen's amount read aloud in Mandarin, synthesised on the device by espeak-ng (offline).

The text is built here from the pending operation's type and amount in fen (``amount_speech``), never taken from a
request, and espeak-ng runs with an argument list (no shell), a timeout and the WAV on stdout, so nothing typed can
reach its command line. Voice: ``cmn-latn-pinyin``, espeak-ng's Mandarin voice whose dictionary readings are
spoken as pinyin; the plain ``cmn`` voice of Debian 12's espeak-ng 1.51 speaks those readings with English letter
rules ("qu kuan" comes out as English words), which no customer would understand.

A device without espeak-ng (``speech_available`` false) shows no speech button and the endpoint answers 404; a
synthesis that fails or times out raises ``SpeechFailed``. Results are cached in memory by text: the same few
amounts (100, 200, 500 yuan) come back all day.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from functools import lru_cache

from station.protocol.entry_types import EntryType
from station.protocol.money import FEN_PER_YUAN

ESPEAK = "espeak-ng"
VOICE = "cmn-latn-pinyin"
#: Words per minute: slower than espeak's default 175, for elderly listeners.
SPEED = 140
TIMEOUT_SECONDS = 10
#: How a spoken amount starts, by operation type (what the customer is about to do).
SPOKEN_TYPES = {
    EntryType.WITHDRAWAL: "取款",
    EntryType.DEPOSIT: "存款",
    EntryType.TRANSFER: "转账",
    EntryType.BILL_PAYMENT: "缴费",
}


class SpeechFailed(RuntimeError):
    """espeak-ng did not produce a WAV (it failed, timed out, or wrote something else)."""


def speech_available() -> bool:
    """Whether espeak-ng is installed on this device."""
    return shutil.which(ESPEAK) is not None


def amount_words(fen: int) -> str:
    """An amount as spoken Chinese: 100000 -> 一千元整, 105050 -> 一千零五十元五角, 1205 -> 十二元零五分."""
    import cn2an  # here, as in station.protocol.money: loading it takes about 0.1 s

    yuan, rest = divmod(fen, FEN_PER_YUAN)
    jiao, fen_digit = divmod(rest, 10)
    words = (cn2an.an2cn(yuan, "low") + "元") if yuan else ""
    if not rest:
        return (words or "零元") + "整"
    if jiao:
        words += cn2an.an2cn(jiao, "low") + "角"
    elif words:
        words += "零"
    if fen_digit:
        words += cn2an.an2cn(fen_digit, "low") + "分"
    return words


def amount_speech(op_type: str, fen: int) -> str:
    """What is read aloud for an operation of ``op_type`` and ``fen``, e.g. "取款，一千元整"."""
    return f"{SPOKEN_TYPES.get(op_type, '')}，{amount_words(fen)}"


@lru_cache(maxsize=64)
def speech_wav(text: str) -> bytes:
    """``text`` spoken by espeak-ng as a WAV file (its header's sizes made true: espeak-ng writes a stream's
    placeholder sizes to stdout, which leaves a browser unsure of the duration)."""
    try:
        done = subprocess.run([ESPEAK, "-v", VOICE, "-s", str(SPEED), "--stdout", text], capture_output=True,
                              timeout=TIMEOUT_SECONDS, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SpeechFailed(str(exc)) from exc
    try:
        with wave.open(io.BytesIO(done.stdout), "rb") as source:
            params = source.getparams()
            frames = source.readframes(params.nframes)
    except (wave.Error, EOFError) as exc:
        raise SpeechFailed("espeak-ng wrote no WAV") from exc
    if not frames:
        raise SpeechFailed("espeak-ng wrote no sound")
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setparams(params)
        target.writeframes(frames)
    return out.getvalue()
