"""The columnar batch every stage passes on: accepted events as NumPy columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        return Rows(*(getattr(self, c)[index] for c in self.COLUMNS))

    def slice(self, start: int, stop: int | None = None) -> Rows:
        """Rows start..stop, as views."""
        return Rows(*(getattr(self, c)[start:stop] for c in self.COLUMNS))

    def in_time_order(self) -> Rows:
        """These rows, which are in arrival (seq) order, sorted by (ts, seq). A stable sort by
        ts keeps arrival order among equal times, and finds sorted runs in linear time."""
        return self.take(np.argsort(self.ts, kind="stable"))

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
