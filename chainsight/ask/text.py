"""Cutting a question into words: shipment ids first (by pattern or as the caller knows them),
homophone typos in Chinese put right by their pinyin, then jieba's segmentation; words matched
to the lexicon (longest phrase first), English typos by edit distance (rapidfuzz). jieba,
pypinyin and rapidfuzz are imported on first use, so other commands do not pay for them."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from chainsight.ask.lexicon import Meaning, phrases

ID_PATTERN = re.compile(r"(?<![A-Za-z0-9_-])([A-Za-z]{1,6}-?\d{3,}(?:-\d+)?)(?![A-Za-z0-9_-])")
NAME_PATTERN = re.compile(r"(?<![A-Za-z0-9_-])([A-Za-z0-9][A-Za-z0-9_.:-]*[A-Za-z0-9]|[A-Za-z0-9])"
                          r"(?![A-Za-z0-9_-])")
CJK = re.compile(r"[\u3400-\u9fff]+")
ASCII_WORD = re.compile(r"[A-Za-z]+")
_lock = threading.Lock()


@dataclass
class Word:
    """One word (or phrase) of a question and what it means; `text` as written."""

    text: str
    meanings: list[Meaning]

    def has(self, slot: str) -> bool:
        return any(s == slot for s, _ in self.meanings)

    def value(self, slot: str) -> object:
        return next(v for s, v in self.meanings if s == slot)


def language(question: str) -> str:
    """"zh" when the question has at least as many Chinese characters as English words."""
    plain = ID_PATTERN.sub(" ", question)
    chinese = sum(len(run) for run in CJK.findall(plain))
    return "zh" if chinese >= len(ASCII_WORD.findall(plain)) else "en"


def shipment_ids(question: str, known: Iterable[str] = ()) -> tuple[list[str], str]:
    """The shipment ids a question names, in order, and the question without them. An id is
    one the caller knows (any case) or looks like one (`SHP-000123`, upper-cased)."""
    by_upper = {k.upper(): k for k in known}
    found: list[str] = []

    def take(match: re.Match) -> str:
        text = match.group(1)
        name = by_upper.get(text.upper(), text.upper())
        if name not in found:
            found.append(name)
        return " "

    rest = ID_PATTERN.sub(take, question)
    if by_upper:  # short known ids the pattern misses (S1, A7)
        rest = NAME_PATTERN.sub(lambda m: take(m) if m.group(1).upper() in by_upper
                                else m.group(0), rest)
    return found, rest


class Segmenter:
    """jieba with the lexicon's words added, and the lexicon keyed by token sequences."""

    def __init__(self) -> None:
        import jieba

        jieba.setLogLevel(60)
        self._jieba = jieba.Tokenizer()
        table = phrases()
        for word in table:
            if CJK.search(word):
                self._jieba.add_word(word, freq=200_000)
        self.lexicon: dict[tuple[str, ...], list[Meaning]] = {}
        for word, meanings in table.items():
            key = self.tokens(word.replace("_", " "))
            self.lexicon.setdefault(key, []).extend(meanings)
        self.longest = max(len(k) for k in self.lexicon)
        self.english = sorted({k[0] for k in self.lexicon if len(k) == 1
                               and k[0].isascii() and k[0].isalpha() and len(k[0]) >= 4})
        self.sounds = sounds(w for w in table if CJK.fullmatch(w) and len(w) >= 2)

    def tokens(self, text: str) -> tuple[str, ...]:
        """jieba's words of `text`, lower-cased, without spaces and punctuation."""
        return tuple(t.lower() for t in self._jieba.lcut(text) if _is_word(t))

    def parts(self, text: str) -> set[str]:
        """Every word jieba sees in `text`, long ones and the words inside them."""
        return {t.lower() for t in self._jieba.lcut_for_search(text) if _is_word(t)}

    def words(self, text: str) -> list[Word]:
        """The question's words: the longest lexicon phrase at each place; a word the
        lexicon does not know has no meanings (yet: see `typo`)."""
        tokens = self.tokens(homophones_fixed(text, self.sounds))
        found, i = [], 0
        while i < len(tokens):
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                meanings = self.lexicon.get(tokens[i:i + n])
                if meanings:
                    found.append(Word("".join(tokens[i:i + n]), _strongest(meanings)))
                    i += n
                    break
            else:
                found.append(Word(tokens[i], []))
                i += 1
        return found

    def typo(self, token: str) -> list[Meaning]:
        """The meanings of the lexicon word a misspelt English word stands for (one edit in
        words of 4 or 5 letters, two from 6), none when nothing is that close."""
        if not (token.isascii() and token.isalpha() and len(token) >= 4):
            return []
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        best = process.extractOne(token, self.english, scorer=OSA.distance,
                                  score_cutoff=1 if len(token) <= 5 else 2)
        return [] if best is None else _strongest(self.lexicon[(best[0],)])


def _strongest(meanings: list[Meaning]) -> list[Meaning]:
    """A word that means something is not also neutral."""
    strong = [m for m in meanings if m[0] != "neutral"]
    return strong or meanings


def _is_word(token: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" for c in token)


def sounds(words: Iterable[str]) -> dict[tuple[str, ...], str]:
    """Chinese words by their pinyin; a pinyin two of them share is left out (no guess)."""
    by_sound: dict[tuple[str, ...], set[str]] = {}
    for word in words:
        by_sound.setdefault(tuple(_sound(c) for c in word), set()).add(word)
    return {sound: next(iter(found)) for sound, found in by_sound.items() if len(found) == 1}


def homophones_fixed(text: str, sounds: dict[tuple[str, ...], str]) -> str:
    """`text` with each run of Chinese characters that sounds exactly like a lexicon word
    (same pinyin, e.g. 告井 for 告警) replaced by that word, longest first."""
    if not CJK.search(text):
        return text
    chars = list(text)
    heard = [_sound(c) if CJK.fullmatch(c) else "" for c in chars]
    longest = max(map(len, sounds), default=0)
    i = 0
    while i < len(chars):
        for n in range(min(longest, len(chars) - i), 1, -1):
            word = sounds.get(tuple(heard[i:i + n]))
            if word is not None and "" not in heard[i:i + n]:
                chars[i:i + n] = word
                i += n
                break
        else:
            i += 1
    return "".join(chars)


@cache
def _sound(char: str) -> str:
    """A character's pinyin without tone (its most common reading)."""
    from pypinyin import lazy_pinyin

    return lazy_pinyin(char)[0]


_segmenter: Segmenter | None = None


def segmenter() -> Segmenter:
    """The one segmenter, built on first use (jieba's dictionary loads in about a second)."""
    global _segmenter
    with _lock:
        if _segmenter is None:
            _segmenter = Segmenter()
        return _segmenter
