"""Event time as the contract writes it: epoch milliseconds, ISO-8601 UTC text, the wall clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # the years 1..9999 of `datetime`


def to_ms(ts: int | datetime) -> int:
    """Epoch milliseconds of either contract timestamp form."""
    return ts if type(ts) is int else (ts - EPOCH) // _MS


def iso(ms: int) -> str:
    """ISO-8601 UTC with a `Z`, milliseconds only when there are any. Beyond the years
    1..9999 that `datetime` holds, numpy's extended years; beyond int64, the number itself."""
    if not MIN_MS <= ms <= MAX_MS:
        return iso_many(np.array([ms]))[0] if -(2**63) < ms < 2**63 else str(ms)
    seconds, millis = divmod(int(ms), 1000)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{_date(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


@lru_cache(maxsize=4096)
def _date(days: int) -> str:
    """The date `days` after 1970-01-01 (alerts and records come from a few days at a time)."""
    return (EPOCH + timedelta(days=days)).date().isoformat()


def iso_many(ms: np.ndarray) -> list[str]:
    """`iso` of many epoch-ms times at once."""
    text = np.datetime_as_string(np.asarray(ms, dtype="datetime64[ms]"), unit="ms").tolist()
    return [t[:-4] + "Z" if t.endswith(".000") else t + "Z" for t in text]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_time(value: str | int | datetime) -> int:
    """Epoch milliseconds of an ISO-8601 time with a UTC offset, a datetime, or epoch ms;
    ValueError for a naive time."""
    if isinstance(value, bool):
        raise ValueError("bad time")
    if isinstance(value, int):
        return value
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"naive time {value!r}: a UTC offset is required")
    return to_ms(dt)
