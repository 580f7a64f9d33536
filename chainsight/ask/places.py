"""Places named in a question: the caller's fences or sites, found by id, or by the
distinctive words of their names (typos forgiven in English by edit distance)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from chainsight.ask.lexicon import PLACE_GENERIC
from chainsight.ask.text import CJK, Word, segmenter


@dataclass(frozen=True)
class Place:
    """A fence or site people may name: its id, its name and (for fences) its kind."""

    id: str
    name: str = ""
    kind: str | None = None


def places_from_fences(geojson: dict) -> list[Place]:
    """The places of a GeoJSON FeatureCollection of fences (as `GET /v1/fences` shows it)."""
    found = []
    for feature in geojson.get("features") or ():
        props = feature.get("properties") or {} if isinstance(feature, dict) else {}
        if isinstance(props.get("fence_id"), str):
            found.append(Place(props["fence_id"], str(props.get("name") or ""),
                               props.get("kind")))
    return found


def without_place_ids(question: str, places: Sequence[Place]) -> tuple[list[str], str]:
    """The places a question names by id (`HUB-01`), and the question without those ids."""
    named = []
    for place in places:
        pattern = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(place.id)}(?![A-Za-z0-9_-])",
                             re.I)
        if pattern.search(question):
            named.append(place.id)
            question = pattern.sub(" ", question)
    return named, question


@lru_cache(maxsize=4096)
def keys(place: Place) -> frozenset[str]:
    """The distinctive words of a place's name: English words and jieba's Chinese words
    that are not generic (hub, 仓, ...)."""
    words = {w.lower() for w in re.findall(r"[A-Za-z]{3,}", place.name)}
    for run in CJK.findall(place.name):
        words.update(t for t in segmenter().parts(run) if len(t) >= 2)
    return frozenset(w for w in words if w not in PLACE_GENERIC)


def named_places(question: str, words: list[Word], places: Sequence[Place]) -> list[str]:
    """The ids of the places the question's words name; the words that name one get the
    meaning ("place", id). Places named by more of their words win; corridors only count
    when named by id."""
    scores: dict[str, int] = {}
    for place in places:
        if place.kind == "corridor":
            continue
        hits = 0
        for key in keys(place):
            if CJK.search(key):
                if key in question:
                    hits += 1
                    _mark(words, lambda text, key=key: text in key or key in text, place.id)
            elif any(_close(w.text, key) for w in words if not w.meanings
                     or w.has("place")):
                hits += 1
                _mark(words, lambda text, key=key: _close(text, key), place.id)
        if hits:
            scores[place.id] = hits
    best = max(scores.values(), default=0)
    chosen = sorted(pid for pid, hits in scores.items() if hits == best)
    names = " ".join(p.name.lower() for p in places if p.id in chosen)
    _mark(words, lambda text: len(text) >= 2 and text in names, "")  # 中心, hub, DC
    return chosen


def _close(text: str, key: str) -> bool:
    """The same word, or (English, 5 letters or more) one or two edits away."""
    if text == key:
        return True
    if not (text.isascii() and len(key) >= 5):
        return False
    from rapidfuzz.distance import OSA

    return OSA.distance(text, key) <= (1 if len(key) < 8 else 2)


def _mark(words: Iterable[Word], matches: Callable[[str], bool], place_id: str) -> None:
    """Give the words that `matches` the meaning ("place", place_id) (or when not yet a
    place, ("place", "") for the generic words of a place's name)."""
    for word in words:
        if (not word.meanings or word.has("place")) and matches(word.text):
            if place_id or not word.meanings:
                word.meanings.append(("place", place_id))
