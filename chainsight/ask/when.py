"""Relative times in a question (今天, 昨天, this week, 过去两小时, "in the last 2 hours")
as a [from, to) range of UTC times, against a given `now` and the asker's time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from chainsight.ask.lexicon import NUMBERS
from chainsight.ask.text import Word

Range = tuple[datetime, datetime]


def number(text: str) -> float | None:
    """A number written in digits, in Chinese (两, 三个) or in English words."""
    text = text.removesuffix("个")
    if text.replace(".", "", 1).isdigit():
        return float(text)
    return NUMBERS.get(text)


def day_range(day: str, now: datetime, tz: ZoneInfo) -> Range:
    """Calendar days and weeks (from midnight in `tz`)."""
    midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = midnight - timedelta(days=midnight.weekday())
    start, days = {"today": (midnight, 1), "yesterday": (midnight - timedelta(days=1), 1),
                   "daybefore": (midnight - timedelta(days=2), 1),
                   "tomorrow": (midnight + timedelta(days=1), 1),
                   "thisweek": (monday, 7), "lastweek": (monday - timedelta(days=7), 7)}[day]
    return _utc(start), _utc(start + timedelta(days=days))


def time_range(words: list[Word], now: datetime, tz: ZoneInfo) -> Range | None:
    """The first time phrase of the question: a calendar day or week, or the last N minutes,
    hours or days (`last`/过去 or a number before a unit); None when there is none."""
    for i, word in enumerate(words):
        if word.has("day"):
            return day_range(word.value("day"), now, tz)
        if word.has("unit") and (i > 0 and (words[i - 1].has("last")
                                            or number(words[i - 1].text) is not None)):
            count = number(words[i - 1].text) if i > 0 else None
            minutes = word.value("unit") * (1 if count is None else count)
            return now - timedelta(minutes=minutes), now
    return None


def _utc(t: datetime) -> datetime:
    return t.astimezone(ZoneInfo("UTC"))
