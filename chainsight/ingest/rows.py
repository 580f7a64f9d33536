"""The columnar batch every stage passes on: accepted events as NumPy columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

_RADIX_BITS = 11  # a radix sort's digit: 2,048 counters stay in cache
_RADIX = 1 << _RADIX_BITS
_DIGIT = np.uint64(_RADIX - 1)


@dataclass
class Rows:
    """A columnar batch of accepted events. Business events (scan/order) keep their decoded
    objects aside, keyed by `seq` (`Decoded.business`, then `Engine.business`)."""

    kind: np.ndarray
    ts: np.ndarray
    seq: np.ndarray
    key: np.ndarray
    device: np.ndarray
    shipment: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    temp_c: np.ndarray
    humidity: np.ndarray
    door: np.ndarray
    accuracy: np.ndarray

    COLUMNS = ("kind", "ts", "seq", "key", "device", "shipment", "lat", "lon", "temp_c",
               "humidity", "door", "accuracy")
    DTYPES = (np.int8, np.int64, np.int64, np.int64, np.int32, np.int32, np.float64, np.float64,
              np.float64, np.float64, np.int8, np.float64)

    @classmethod
    def empty(cls) -> Rows:
        return cls(*(np.empty(0, dtype=t) for t in cls.DTYPES))

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray) -> Rows:
        """The rows at `index` (positions, or a boolean mask), copied in one pass over them."""
        if index.dtype == np.bool_:
            index = np.flatnonzero(index)
        return Rows(*_gather(index.astype(np.int64, copy=False), *self._columns()))

    def _columns(self) -> tuple[np.ndarray, ...]:
        """The columns, contiguous and of their declared types (as `_gather` is compiled)."""
        return tuple(np.ascontiguousarray(getattr(self, c), dtype=t)
                     for c, t in zip(self.COLUMNS, self.DTYPES, strict=True))

    def slice(self, start: int, stop: int | None = None) -> Rows:
        """Rows start..stop, as views."""
        return Rows(*(getattr(self, c)[start:stop] for c in self.COLUMNS))

    def in_time_order(self) -> Rows:
        """These rows, which are in arrival (seq) order, sorted by (ts, seq): a stable sort by
        ts keeps arrival order among equal times."""
        return self.take(_time_order(self.ts))

    def dump_state(self) -> dict:
        return {c: getattr(self, c) for c in self.COLUMNS}

    @classmethod
    def from_state(cls, data: dict) -> Rows:
        rows = cls(*(np.asarray(data[c], dtype=t)
                     for c, t in zip(cls.COLUMNS, cls.DTYPES, strict=True)))
        if len({len(getattr(rows, c)) for c in cls.COLUMNS}) > 1:
            raise ValueError("row columns of different lengths")
        return rows

    @classmethod
    def join(cls, parts: list[Rows]) -> Rows:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, c) for p in parts]) for c in cls.COLUMNS))


@njit(cache=True)
def _gather(index: np.ndarray, kind: np.ndarray, ts: np.ndarray, seq: np.ndarray,
            key: np.ndarray, device: np.ndarray, shipment: np.ndarray, lat: np.ndarray,
            lon: np.ndarray, temp_c: np.ndarray, humidity: np.ndarray, door: np.ndarray,
            accuracy: np.ndarray) -> tuple[np.ndarray, ...]:
    """`Rows.take` of every column at once (NumPy takes them one after another, a third slower:
    each column's pass reads the index and the rows' cache lines again)."""
    n = index.size
    out = (np.empty(n, kind.dtype), np.empty(n, ts.dtype), np.empty(n, seq.dtype),
           np.empty(n, key.dtype), np.empty(n, device.dtype), np.empty(n, shipment.dtype),
           np.empty(n, lat.dtype), np.empty(n, lon.dtype), np.empty(n, temp_c.dtype),
           np.empty(n, humidity.dtype), np.empty(n, door.dtype), np.empty(n, accuracy.dtype))
    for i in range(n):
        j = index[i]
        out[0][i] = kind[j]
        out[1][i] = ts[j]
        out[2][i] = seq[j]
        out[3][i] = key[j]
        out[4][i] = device[j]
        out[5][i] = shipment[j]
        out[6][i] = lat[j]
        out[7][i] = lon[j]
        out[8][i] = temp_c[j]
        out[9][i] = humidity[j]
        out[10][i] = door[j]
        out[11][i] = accuracy[j]
    return out


@njit(cache=True)
def _time_order(ts: np.ndarray) -> np.ndarray:
    """`np.argsort(ts, kind="stable")` as a radix sort of ts - min(ts), 11 bits a pass and
    as many passes as the times' span needs (three for a day): a quarter of the time."""
    n = ts.size
    order = np.arange(n)
    if n < 2:
        return order
    low = np.uint64(ts.min())
    span = np.uint64(ts.max()) - low
    spare = np.empty(n, np.int64)
    shift = np.uint64(0)
    while True:
        start = np.zeros(_RADIX + 1, np.int64)
        for i in range(n):
            start[((np.uint64(ts[i]) - low) >> shift) & _DIGIT] += 1
        total = 0
        for d in range(_RADIX):
            total, start[d] = total + start[d], total
        for k in order:
            d = ((np.uint64(ts[k]) - low) >> shift) & _DIGIT
            spare[start[d]] = k
            start[d] += 1
        order, spare = spare, order
        shift += np.uint64(_RADIX_BITS)
        if shift >= 64 or span >> shift == 0:
            return order
