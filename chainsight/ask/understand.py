"""From a question to the structured query it asks for (`Interpretation`), deterministically:
the words' meanings (lexicon, places, ids, times), then which thing is asked about, the
filters, the time range and the aggregation. A question with too little or too much that is
not understood is refused rather than guessed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from chainsight.ask.places import Place, named_places, without_place_ids
from chainsight.ask.text import Word, language, segmenter, shipment_ids
from chainsight.ask.when import number, time_range
from chainsight.config import Profile, load_profiles
from chainsight.contract.times import iso

ACTIVE = ["acknowledged", "open"]  # alerts not yet resolved
CODE = re.compile(r"[=;*<>{}`\\|$]")  # in queries and markup, not in questions
STRONG = ("entity", "kind", "abnormal", "severity", "state", "status", "profile", "late",
          "risk")


@dataclass
class Interpretation:
    """The structured query a question asks for, or why it was not understood."""

    understood: bool
    language: str
    entity: str | None = None  # "shipment" or "alert"
    aggregation: str | None = None  # "status", "temperature_history", "list" or "count"
    filters: dict = field(default_factory=dict)
    time_range: dict | None = None  # {"field", "from", "to"}, ISO-8601 UTC, `to` excluded
    reason: str | None = None  # when not understood

    def query(self) -> dict:
        """The query itself: entity, aggregation, filters, time range."""
        return {"entity": self.entity, "aggregation": self.aggregation,
                "filters": self.filters, "time_range": self.time_range}

    def as_dict(self) -> dict:
        out = {**self.query(), "language": self.language}
        if not self.understood:
            out["reason"] = self.reason
        return out


def profile_families(profiles: Mapping[str, Profile]) -> dict[str, list[str]]:
    """The profile names each profile word stands for, from the profiles' limits and names."""
    def which(test: Callable[[str, Profile], bool]) -> list[str]:
        return sorted(name for name, p in profiles.items() if test(name, p))

    return {"cold": which(lambda n, p: p.max_c <= 8),
            "frozen": which(lambda n, p: p.max_c <= 0),
            "pharma": which(lambda n, p: "pharma" in n),
            "chilled": which(lambda n, p: "chilled" in n),
            "fresh": which(lambda n, p: "fresh" in n),
            "ambient": which(lambda n, p: p.min_c >= 10)}


def understand(question: str, now: datetime, places: Sequence[Place] = (),
               profiles: Mapping[str, Profile] | None = None, known_ids: Iterable[str] = (),
               tz: str = "UTC") -> Interpretation:
    """The query `question` asks for. `now` resolves relative times (in time zone `tz`);
    `places` are the fences or sites people may name; `known_ids` the shipment ids the asker
    may name that do not look like ids (`S1`)."""
    text = unicodedata.normalize("NFKC", question)
    lang = language(text)
    if CODE.search(text) or any(unicodedata.category(c) in ("Cc", "Cf") and not c.isspace()
                                for c in text):
        return Interpretation(False, lang, reason="it looks like code or markup, "
                                                  "not a question")
    place_ids, text = without_place_ids(text, places)
    ids, text = shipment_ids(text, known_ids)
    words = segmenter().words(text)
    place_ids = sorted(set(place_ids) | set(named_places(text, words, places)))
    for word in words:  # English typos, once place names have had their pick
        if not word.meanings:
            word.meanings = segmenter().typo(word.text)
    reason = _refusal(words, bool(ids), bool(place_ids))
    if reason is not None:
        return Interpretation(False, lang, reason=reason)
    entity = _entity(words, lang, bool(ids))
    filters = _filters(entity, words, ids, place_ids,
                       profile_families(profiles if profiles is not None else load_profiles()))
    count = any(w.has("count") for w in words)
    if entity == "shipment" and len(ids) == 1:  # "how many" of one shipment: its status
        aggregation = "temperature_history" if any(w.has("temp") for w in words) else "status"
        filters = {"shipment_id": ids}
    else:
        aggregation = "count" if count else "list"
    span = None if aggregation == "status" else time_range(words, now, ZoneInfo(tz))
    if entity == "alert" and "state" not in filters and span is None:
        filters["state"] = ACTIVE
    window = None
    if span is not None:
        window = {"field": _time_field(entity, aggregation, filters, words),
                  "from": iso(int(span[0].timestamp() * 1000)),
                  "to": iso(int(span[1].timestamp() * 1000))}
    return Interpretation(True, lang, entity, aggregation, dict(sorted(filters.items())),
                          window)


def _refusal(words: list[Word], has_ids: bool, has_places: bool) -> str | None:
    """Why the question is not answered: it asks for a change, says nothing that a query is
    made of, or has too many words not understood to be sure what it asks."""
    if any(w.has("action") for w in words):
        return "it asks to change something; questions can only read"
    content = [w for w in words if not w.has("neutral") and number(w.text) is None]
    unknown = [w.text for w in content if not w.meanings]
    strong = has_ids or any(w.has(s) for w in words for s in STRONG) or (
        has_places and not unknown and any(w.has("list") or w.has("count") for w in words))
    if not strong:
        return "it names no shipment, alert or condition"
    if len(unknown) * 2 > len(content) or (unknown and len(unknown) >= len(content) - 1
                                           and not has_ids):
        return f"words not understood: {', '.join(unknown)}"
    return None


def _entity(words: list[Word], lang: str, has_ids: bool) -> str:
    """What the question asks about: its head noun (English: the first after which/how
    many, else the first; Chinese: the last one not after 有/没有), else what its other
    words are about (goods and journeys: shipments; alert kinds and severities: alerts)."""
    nouns = [i for i, w in enumerate(words) if w.has("entity")]
    if nouns:
        if lang == "en":
            cues = [i for i, w in enumerate(words) if w.has("list") or w.has("count")]
            after = [i for i in nouns if cues and i > cues[0]]
            head = (after or nouns)[0]
        else:
            heads = [i for j, i in enumerate(nouns) if not _possessed(words, nouns[j - 1]
                                                                     if j else -1, i)]
            head = (heads or nouns)[-1]
        return words[head].value("entity")
    if has_ids or any(w.has(s) for w in words for s in ("profile", "status", "late", "risk")):
        return "shipment"  # words about goods and their journey
    if any(w.has(s) for w in words for s in ("kind", "abnormal", "severity", "state")):
        return "alert"
    return "shipment"


def _possessed(words: list[Word], previous: int, i: int) -> bool:
    """Chinese: the noun at `i` is something had (有告警的订单, 订单有严重告警): right after
    有/没有, or after one once another noun came before it."""
    def have(w: Word) -> bool:
        return w.has("have") or w.has("not")

    return (i > 0 and have(words[i - 1])) or (
        previous >= 0 and any(have(w) for w in words[previous + 1:i]))


def _filters(entity: str, words: list[Word], ids: list[str], place_ids: list[str],
             families: dict[str, list[str]]) -> dict:
    def values(slot: str) -> list:
        return [v for w in words for s, v in w.meanings if s == slot]

    filters: dict = {}
    if ids:
        filters["shipment_id"] = ids
    if place_ids:
        filters["place"] = place_ids
    profile_sets = [set(families[f]) for f in dict.fromkeys(values("profile"))]
    if profile_sets:
        filters["profile"] = sorted(set.intersection(*profile_sets))
    kinds = set(values("kind"))
    if values("abnormal") or (values("temp") and any(w.has("entity") and
                                                     w.value("entity") == "alert"
                                                     for w in words)):
        kinds.add("temperature_excursion")
    late, risk = bool(values("late")), bool(values("risk"))
    if entity == "alert" and late:
        kinds.add("eta_late")
    severities = sorted(set(values("severity")))
    if entity == "alert":
        if kinds:
            filters["kind"] = sorted(kinds)
        states = sorted(set(values("state")))
        if states:
            filters["state"] = states
    else:
        if kinds:
            filters["alert_kind"] = sorted(kinds)
        statuses = sorted({s for group in values("status") for s in group})
        if statuses:
            filters["status"] = statuses
        if risk:
            filters["at_risk"] = True
        elif late:
            filters["late"] = True
        if not kinds and not severities and any(
                w.has("entity") and w.value("entity") == "alert" for w in words):
            filters["has_alerts"] = not _negated_alerts(words)
    if severities:
        filters["severity"] = severities
    return filters


def _negated_alerts(words: list[Word]) -> bool:
    """"no alerts", 没有告警: a negation right before the alert noun."""
    return any(w.has("entity") and w.value("entity") == "alert" and i > 0
               and words[i - 1].has("not") for i, w in enumerate(words))


def _time_field(entity: str, aggregation: str, filters: dict, words: list[Word]) -> str:
    """Which time the range is about: an alert's `at`, a reading's `ts`, a shipment's ETA
    (late, at-risk or arriving shipments), else when it was last seen."""
    if entity == "alert":
        return "at"
    if aggregation == "temperature_history":
        return "ts"
    if filters.get("late") or filters.get("at_risk") or any(w.has("arrive") for w in words):
        return "eta"
    if "alert_kind" in filters or "severity" in filters:
        return "alert_at"
    return "last_seen"
