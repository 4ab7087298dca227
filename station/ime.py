"""Pinyin input for the touchscreen: the candidates behind the on-screen keyboard (``station/static/keypad.js``).

The kiosk has no keyboard, so a payee's name or a customer's words are typed as pinyin on the screen and picked
from a candidate bar. Everything offered comes from maintained packages, never from a hand-typed list:

- characters: the 8,105 of the 通用规范汉字表 (pypinyin-dict's ``kmandarin_8105``), so no traditional or obscure
  forms crowd the bar, each under every reading pypinyin's character dictionary gives it (单 under dan and shan);
- words (2 to 4 characters): pypinyin's phrase dictionary (mostly idioms) and CC-CEDICT's as pypinyin-dict ships
  it (everyday words such as 养老金, 那天, 早点 that pypinyin's own lacks), kept when all their characters are
  standard ones;
- order: neither package has frequency data, so a character's rank under a reading is how many of those words
  use it with that reading (的 under de, 王 under wang), and a word ranks by its rarest character; for a name
  field the surnames by their share of China's population and the common given names (秀英, 建国, ...) of Faker's
  zh_CN person provider come first (pypinyin has no surname data).

Served by a small JSON endpoint (``station.ui.ime``), not shipped as a static index: the index holds some 8,000
characters and 100,000 words, several megabytes that Chromium on a Raspberry Pi would parse again on every screen
with a text field, while the station builds it once per process (on first use, or in a thread when the serving
process starts: reading CC-CEDICT takes a few seconds on a Pi) and answers each keystroke with one page of a few
candidates, a few hundred bytes over the loopback, from lookups in memory.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import re
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache, cached_property

#: What the endpoint accepts: lowercase pinyin letters and the syllable separator, at most this long.
PINYIN_RE = re.compile(r"[a-z']+")
SYLLABLE_RE = re.compile(r"[a-z]+")
MAX_PINYIN = 32
FIELDS = ("name", "text")
#: A page of the candidate bar: at most this many candidates and (past the first) this many characters, so that a
#: page of single characters and a page of long words both fit the bar's width.
PAGE_ITEMS = 5
PAGE_CHARS = 8
MAX_PAGE = 200
WORD_LENGTHS = range(2, 5)


@dataclass(frozen=True)
class Candidate:
    """One choice in the candidate bar: its text and how many letters of the typed pinyin it uses up."""

    text: str
    used: int


@dataclass(frozen=True)
class Page:
    """One page of candidates for typed pinyin, with the syllables it was read as."""

    syllables: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    page: int
    more: bool


@cache
def toneless(reading: str) -> str:
    """A pinyin reading without its tone, ü typed as v (lǜ -> lv), as on a pinyin keyboard."""
    from pypinyin.contrib.tone_convert import to_normal

    return to_normal(reading)


class CandidateIndex:
    """Characters by reading and words by first syllable, each list in the order the candidate bar offers it."""

    def __init__(self, standard: set[str], char_readings: dict[str, list[str]], words: dict[str, list[str]],
                 surnames: list[str], given_names: list[str]):
        uses = Counter()  # (character, reading) -> how many words use it so
        self.words = defaultdict(list)  # first syllable -> [(syllables, word, rank)]
        for word, readings in words.items():
            for char, reading in zip(word, readings, strict=True):
                uses[char, reading] += 1
        for word, readings in words.items():
            rank = min(uses[char, reading] for char, reading in zip(word, readings, strict=True))
            self.words[readings[0]].append((tuple(readings), word, rank))
        given = set(given_names)
        for entries in self.words.values():
            entries.sort(key=lambda entry: -entry[2])
        self.name_words = defaultdict(list)
        for entries in self.words.values():
            for entry in entries:
                if entry[1] in given:
                    self.name_words[entry[0][0]].append(entry)
        self.chars = defaultdict(list)
        for char in standard:
            for reading in dict.fromkeys(char_readings.get(char, ())):
                if SYLLABLE_RE.fullmatch(reading):
                    self.chars[reading].append(char)
        # A surname comes first under its usual reading only (方 is Fang, not also wang).
        surname_rank = {name: i for i, name in enumerate(surnames) if len(name) == 1}
        given_chars = {char for name in given_names for char in name}
        self.name_chars = {}
        for reading, chars in self.chars.items():
            chars.sort(key=lambda char, reading=reading: (-uses[char, reading], char))
            self.name_chars[reading] = sorted(chars, key=lambda char, reading=reading: (
                surname_rank.get(char, len(surname_rank)) if char_readings[char][0] == reading else len(surname_rank),
                char not in given_chars, -uses[char, reading], char))
        self.syllables = frozenset(self.chars)
        self.prefixes = frozenset(s[:i] for s in self.syllables for i in range(1, len(s) + 1))
        self.longest = max(map(len, self.syllables))

    def split(self, letters: str) -> list[tuple[str, bool, int]]:
        """The typed letters as syllables: (syllable, whole, letters used up to its end). The last of each run
        between apostrophes may be the start of a syllable (w, zh, xia on its way to xiang); the letters from where
        they stop being pinyin on (a slip of the finger) are left out, with everything after them."""
        pieces, offset = [], 0
        for run in letters.split("'"):
            readable = next(parsed for end in range(len(run), -1, -1)
                            if (parsed := self._split_run(run[:end])) is not None)
            for piece, whole in readable:
                offset += len(piece)
                pieces.append((piece, whole, offset))
            if sum(map(len, (piece for piece, _ in readable))) < len(run):
                break
            offset += 1
        return pieces

    def _split_run(self, run: str, failed: set[int] | None = None, start: int = 0) -> list[tuple[str, bool]] | None:
        """``run[start:]`` as whole syllables, longest first, and perhaps the start of one at the end; None if it
        cannot be read (``failed`` remembers the offsets that cannot, so a long run costs no more than its length
        squared)."""
        failed = set() if failed is None else failed
        if start == len(run):
            return []
        if start in failed:
            return None
        for length in range(min(self.longest, len(run) - start), 0, -1):
            head = run[start:start + length]
            if head in self.syllables:
                rest = self._split_run(run, failed, start + length)
                if rest is not None:
                    return [(head, True), *rest]
        if run[start:] in self.prefixes:
            return [(run[start:], False)]
        failed.add(start)
        return None

    def candidates(self, letters: str, field: str) -> tuple[tuple[str, ...], list[Candidate]]:
        """Every candidate for ``letters`` in order: words using all the syllables typed, then words using the
        first few, then characters for the first syllable (after one is picked the rest stays to be typed)."""
        pieces = self.split(letters)
        if not pieces:
            return (), []
        name = field == "name"
        found, seen = [], set()

        def offer(text, used):
            if text not in seen:
                seen.add(text)
                found.append(Candidate(text, used))

        first, _, _ = pieces[0]
        for count in range(min(len(pieces), max(WORD_LENGTHS)), 1, -1):
            wanted = pieces[:count]
            used = wanted[-1][2]
            last_is_open = count == len(pieces)
            groups = ([self.name_words] if name else []) + [self.words]
            for group in groups:
                matches = [(syllables[-1] != wanted[-1][0], word) for syllables, word, _ in self._entries(group, first)
                           if len(syllables) == count and self._fits(syllables, wanted, last_is_open)]
                # Words whose last syllable is the one typed, then those it only begins (sorted() keeps the rank).
                for _, word in sorted(matches, key=lambda match: match[0]):
                    offer(word, used)
        head, whole, used = pieces[0]
        chars = self.name_chars if name else self.chars
        readings = [head] if whole and len(pieces) > 1 else self._readings_from(head)
        for reading in readings:
            for char in chars[reading]:
                offer(char, used)
        return tuple(piece for piece, _, _ in pieces), found

    def _entries(self, group, first: str):
        """The words of ``group`` whose first syllable can be ``first`` (a typed start stands for several)."""
        if first in self.syllables and first in group:
            return group[first]
        return [entry for reading in self._readings_from(first) for entry in group.get(reading, ())]

    def _readings_from(self, start: str) -> list[str]:
        """The syllables that begin with ``start``: itself first, then the longer ones by how many characters."""
        longer = sorted((s for s in self.syllables if s.startswith(start) and s != start),
                        key=lambda s: (-len(self.chars[s]), s))
        return ([start] if start in self.syllables else []) + longer

    @staticmethod
    def _fits(syllables: tuple[str, ...], wanted, last_is_open: bool) -> bool:
        for i, (syllable, (piece, whole, _)) in enumerate(zip(syllables, wanted, strict=True)):
            open_piece = not whole or (last_is_open and i == len(wanted) - 1)
            if not (syllable.startswith(piece) if open_piece else syllable == piece):
                return False
        return True

    def page(self, letters: str, field: str, number: int) -> Page:
        """Page ``number`` (from 0) of the candidates for ``letters`` (see ``PAGE_ITEMS`` and ``PAGE_CHARS``)."""
        syllables, found = self.candidates(letters, field)
        start, current = 0, 0
        while True:
            end, chars = start, 0
            while end < len(found) and end - start < PAGE_ITEMS and (
                    end == start or chars + len(found[end].text) <= PAGE_CHARS):
                chars += len(found[end].text)
                end += 1
            if current == number or end >= len(found):
                break
            start, current = end, current + 1
        if current != number:
            return Page(syllables, (), number, False)
        return Page(syllables, tuple(found[start:end]), number, end < len(found))


def cedict_phrases() -> dict[str, list[list[str]]]:
    """CC-CEDICT's words with their readings, as pypinyin-dict ships them (in parts, ``cc_cedict_0`` ...).

    The parts are run as modules without being registered in ``sys.modules`` (which ``import`` would do): once the
    index is built the 100,000 entries are let go instead of staying in memory for the life of the process.
    """
    from pypinyin_dict import phrase_pinyin_data

    phrases = {}
    for part in sorted(pkgutil.iter_modules(phrase_pinyin_data.__path__), key=lambda part: part.name):
        if re.fullmatch(r"cc_cedict_\d+", part.name):
            spec = part.module_finder.find_spec(part.name, None)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            phrases.update(module.phrases_dict)
    if not phrases:
        raise LookupError("pypinyin-dict ships no CC-CEDICT phrases")
    return phrases


class _Loader:
    """The index, built once per process on first use (a lock keeps two first requests from building it twice).

    The packages are imported here, not at the top: their dictionaries take memory and seconds to load, which the
    station's commands and a screen without a text field need not pay.
    """

    def __init__(self):
        self._lock = threading.Lock()

    @cached_property
    def index(self) -> CandidateIndex:
        from faker.providers.person.zh_CN import Provider as ChinesePeople
        from pypinyin.phrases_dict import phrases_dict
        from pypinyin.pinyin_dict import pinyin_dict
        from pypinyin_dict.pinyin_data.kmandarin_8105 import pinyin_dict as standard_8105

        standard = {chr(code) for code in standard_8105}
        char_readings = {chr(code): [toneless(r) for r in readings.split(",")]
                         for code, readings in pinyin_dict.items() if chr(code) in standard}
        words = {}
        for source in (phrases_dict, cedict_phrases()):
            for word, readings in source.items():
                if (len(word) in WORD_LENGTHS and len(readings) == len(word) and word not in words
                        and standard.issuperset(word)):
                    words[word] = [toneless(options[0]) for options in readings]
        return CandidateIndex(standard, char_readings, words, list(ChinesePeople.last_names),
                              ChinesePeople.first_names_female + ChinesePeople.first_names_male)

    def get(self) -> CandidateIndex:
        with self._lock:
            return self.index


_loader = _Loader()


def candidate_index() -> CandidateIndex:
    """The process's candidate index (built on the first call; later calls return the same one)."""
    return _loader.get()


def warm_up() -> threading.Thread:
    """Build the index in a background thread, so the first keystroke after boot does not wait for it."""
    thread = threading.Thread(target=candidate_index, name="ime-index", daemon=True)
    thread.start()
    return thread
