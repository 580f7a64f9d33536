"""Ingest: decode lines, drop duplicates, and reorder per key within the allowed lateness.

Arrival order goes in; event-time order comes out. Each device (for gps/sensor) and each shipment
(for scan/order) is a key. An event is held until its key, or the stream as a whole, has seen an
event `allowed_lateness` newer; then events are released in (ts, arrival) order, so out-of-order
arrival within the bound gives the same results as in-order arrival. An event older than its key's
watermark is late: counted and kept for history, not processed by rules. Keys whose clocks lag the
stream (skewed devices, offline buffers) are processed in their own arrival order, not dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numba
import numpy as np

from chainsight.events import (
    GPS,
    KIND_OF,
    SCAN,
    SENSOR,
    Event,
    EventDecoder,
    Gps,
    Order,
    Scan,
    Sensor,
)
from chainsight.state import NO_TS, State

NAN = float("nan")
DEVICE_EVENTS = (Gps, Sensor)
TS_BASE = -(1 << 43)  # derived ids pack ts - TS_BASE into 44 bits


@dataclass
class Rows:
    """A columnar batch of accepted events; business events (scan/order) ride along in `objs`."""

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
    obj: np.ndarray
    objs: dict[int, Scan | Order] = field(default_factory=dict)

    COLUMNS = ("kind", "ts", "seq", "key", "device", "shipment", "lat", "lon", "temp_c",
               "humidity", "door", "accuracy", "obj")
    DTYPES = (np.int8, np.int64, np.int64, np.int64, np.int32, np.int32, np.float64, np.float64,
              np.float64, np.float64, np.int8, np.float64, np.int64)

    @classmethod
    def from_lists(cls, lists: list[list], objs: dict[int, Scan | Order]) -> Rows:
        arrays = [np.array(v, dtype=t) for v, t in zip(lists, cls.DTYPES, strict=True)]
        return cls(*arrays, objs=objs)

    @classmethod
    def empty(cls) -> Rows:
        return cls.from_lists([[] for _ in cls.COLUMNS], {})

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray) -> Rows:
        rows = Rows(*(getattr(self, c)[index] for c in self.COLUMNS))
        rows.objs = {int(o): self.objs[int(o)] for o in rows.obj[rows.obj >= 0]}
        return rows

    def concat(self, other: Rows) -> Rows:
        if not len(self):
            return other
        if not len(other):
            return self
        rows = Rows(*(np.concatenate((getattr(self, c), getattr(other, c))) for c in self.COLUMNS))
        rows.objs = {**self.objs, **other.objs}
        return rows


class Deduplicator:
    """Remembers event ids for one to two `window_ms` of event time (two rotating generations).

    An explicit `event_id` is remembered as is; a derived id `(type, device or shipment, ts)` as
    one exact integer built from the row's key, kind and ts.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.current: set[str | int] = set()
        self.previous: set[str | int] = set()
        self.generation_start = NO_TS

    def fresh(self, event_ids: list[str | None], rows: Rows) -> np.ndarray | None:
        """Indices of rows not seen before, or None when every row is new."""
        keys = event_ids if None not in event_ids else self._with_derived(event_ids, rows)
        n = len(keys)
        first = dict(zip(reversed(keys), range(n - 1, -1, -1), strict=True))  # key -> 1st row
        seen = (first.keys() & self.current) | (first.keys() & self.previous)
        self.current.update(first)
        if len(first) == n and not seen:
            return None
        for key in seen:
            del first[key]
        return np.sort(np.fromiter(first.values(), np.int64, len(first)))

    @staticmethod
    def _with_derived(event_ids: list[str | None], rows: Rows) -> list[str | int]:
        """Event ids, with the derived id as one exact integer where there is none."""
        derived = ((rows.key * 4 + rows.kind) << 44) | (rows.ts - TS_BASE)
        exact = (rows.key.max(initial=0) < 1 << 17 and rows.ts.min(initial=TS_BASE) >= TS_BASE
                 and rows.ts.max(initial=TS_BASE) < TS_BASE + (1 << 44))
        ints = derived.tolist() if exact else [
            ((k * 4 + c) << 44) | (t - TS_BASE)
            for k, c, t in zip(rows.key.tolist(), rows.kind.tolist(), rows.ts.tolist(),
                               strict=True)]
        return [i if e is None else e for e, i in zip(event_ids, ints, strict=True)]

    def expire(self, newest_ts: int) -> None:
        if newest_ts - self.generation_start >= self.window_ms:
            self.previous, self.current = self.current, set()
            self.generation_start = newest_ts


@dataclass
class Extracted:
    """A decoded batch as columns, ids still as names: the stateless part of ingest, which can
    run in another process (`replay` does)."""

    kind: np.ndarray
    ts: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    temp_c: np.ndarray
    humidity: np.ndarray
    door: np.ndarray
    accuracy: np.ndarray
    devices: tuple[list[str], np.ndarray]  # gps/sensor rows' device ids, factorized
    shipments: tuple[list[str | None], np.ndarray]  # every row's shipment_id, factorized
    event_ids: list[str | None]
    business: dict[int, Scan | Order]  # row -> scan/order event
    dead_letters: list[dict]


def extract(events: list[Event], dead_letters: list[dict]) -> Extracted:
    """Columns of validated events in arrival order."""
    n = len(events)
    kind = np.fromiter([KIND_OF[type(e)] for e in events], np.int8, n)
    ts = np.fromiter([e.ts for e in events], np.int64, n)
    lat, lon, temp, hum, acc = (np.full(n, NAN) for _ in range(5))
    door = np.full(n, -1, dtype=np.int8)
    at = np.flatnonzero(kind == GPS)
    gps = [e for e in events if type(e) is Gps]
    lat[at] = _floats([e.lat for e in gps])
    lon[at] = _floats([e.lon for e in gps])
    acc[at] = _floats([e.accuracy_m for e in gps])
    at = np.flatnonzero(kind == SENSOR)
    sensors = [e for e in events if type(e) is Sensor]
    temp[at] = _floats([e.temp_c for e in sensors])
    hum[at] = _floats([e.humidity_pct for e in sensors])
    door[at] = np.nan_to_num(_floats([e.door_open for e in sensors]), nan=-1)
    business: dict[int, Scan | Order] = {}
    for i in np.flatnonzero(kind >= SCAN).tolist():
        e = business[i] = events[i]
        if type(e) is Scan and e.lat is not None and e.lon is not None:
            lat[i], lon[i] = e.lat, e.lon
    return Extracted(kind, ts, lat, lon, temp, hum, door, acc,
                     factorize([e.device_id for e in events if type(e) in DEVICE_EVENTS]),
                     factorize([e.shipment_id for e in events]),
                     [e.event_id for e in events], business, dead_letters)


def factorize(names: list) -> tuple[list, np.ndarray]:
    """The distinct names in first-seen order, and each name's position among them (so only
    the distinct names need interning into the engine's registries)."""
    index = {name: i for i, name in enumerate(dict.fromkeys(names))}
    return list(index), np.fromiter(map(index.__getitem__, names), np.int32, len(names))


@dataclass
class Decoded:
    rows: Rows
    dead_letters: list[dict]
    valid: int
    duplicates: int


class Ingest:
    """Decodes raw lines into columnar rows, interning ids into `state`."""

    def __init__(self, state: State, decoder: EventDecoder, dedup: Deduplicator) -> None:
        self.state = state
        self.decoder = decoder
        self.dedup = dedup
        self.seq = 0

    def decode(self, lines: Iterable[bytes], first_line: int = 1,
               now: int | None = None) -> Decoded:
        lines = lines if isinstance(lines, list) else list(lines)
        return self.columns(extract(*self.decoder.decode_many(lines, first_line, now)))

    def columns(self, x: Extracted) -> Decoded:
        """Rows with dense ids and arrival sequence numbers, duplicates removed."""
        n = len(x.ts)
        st = self.state
        seq = np.arange(self.seq, self.seq + n, dtype=np.int64)
        self.seq += n  # duplicates dropped below leave gaps: seq only orders arrivals
        names, codes = x.shipments
        shipment = st.intern_shipments(names)[codes]
        device = np.full(n, -1, dtype=np.int32)
        names, codes = x.devices
        device[x.kind <= SENSOR] = st.intern_devices(names)[codes]
        key = np.where(x.kind <= SENSOR, 2 * device.astype(np.int64), 2 * shipment + 1)
        obj = np.full(n, -1, dtype=np.int64)
        rows_of = np.fromiter(x.business, np.int64, len(x.business))
        obj[rows_of] = seq[rows_of]
        objs = {int(seq[i]): e for i, e in x.business.items()}
        rows = Rows(x.kind, x.ts, seq, key, device, shipment, x.lat, x.lon, x.temp_c,
                    x.humidity, x.door, x.accuracy, obj, objs)
        keep = self.dedup.fresh(x.event_ids, rows)
        if keep is not None:
            rows = rows.take(keep)
        return Decoded(rows, x.dead_letters, n, n - len(rows))


def _floats(values: list) -> np.ndarray:
    """Optional numbers (None for absent, bools as 0/1) as float64 with NaN for absent."""
    if None in values:
        return np.array(values, dtype=np.float64)
    return np.fromiter(values, np.float64, len(values))  # about twice as fast as np.array


@numba.njit(cache=True)
def _admit(key: np.ndarray, ts: np.ndarray, newest: np.ndarray, floor: np.ndarray,
           lateness: int) -> np.ndarray:
    """Mark events older than their key's watermark as late, advancing each key's newest ts."""
    late = np.zeros(len(ts), dtype=np.bool_)
    for i in range(len(ts)):
        k = key[i]
        if ts[i] < floor[k] or ts[i] < newest[k] - lateness:
            late[i] = True
        elif ts[i] > newest[k]:
            newest[k] = ts[i]
    return late


class Reorder:
    """Per-key event-time reordering buffer with a bounded lateness."""

    def __init__(self, lateness_ms: int) -> None:
        self.lateness_ms = lateness_ms
        self.pending = Rows.empty()
        self.newest = np.full(0, NO_TS, dtype=np.int64)  # per key: newest ts admitted
        self.floor = np.full(0, NO_TS, dtype=np.int64)  # per key: newest ts released
        self.stream_newest = NO_TS
        self.late_dropped = 0

    def _grow(self, n_keys: int) -> None:
        if n_keys > len(self.newest):
            size = max(n_keys, 2 * len(self.newest), 64)
            self.newest = np.concatenate((self.newest, np.full(size - len(self.newest), NO_TS)))
            self.floor = np.concatenate((self.floor, np.full(size - len(self.floor), NO_TS)))

    def admit(self, rows: Rows) -> Rows:
        """Buffer `rows`; returns the late ones (already counted in `late_dropped`)."""
        if not len(rows):
            return rows
        self._grow(int(rows.key.max()) + 1)
        late = _admit(rows.key, rows.ts, self.newest, self.floor, self.lateness_ms)
        self.stream_newest = max(self.stream_newest, int(rows.ts.max()))
        n_late = int(late.sum())
        if n_late:
            self.late_dropped += n_late
            self.pending = self.pending.concat(rows.take(~late))
            return rows.take(late)
        self.pending = self.pending.concat(rows)
        return Rows.empty()

    def release(self, upto: int | None = None, everything: bool = False) -> Rows:
        """Events safe to process, in (ts, arrival) order.

        An event is released once its key or the stream has seen an event `lateness` newer; `upto`
        (a wall-clock advance) releases every event older than `upto - lateness`.
        """
        p = self.pending
        if not len(p):
            return p
        if everything:
            ready = np.ones(len(p), dtype=np.bool_)
        else:
            stream = max(self.stream_newest, NO_TS if upto is None else upto)
            ready = p.ts < np.maximum(self.newest[p.key], stream) - self.lateness_ms
        if not ready.any():
            return Rows.empty()
        released = p.take(np.flatnonzero(ready))
        self.pending = p.take(np.flatnonzero(~ready))
        np.maximum.at(self.floor, released.key, released.ts)
        return released.take(np.lexsort((released.seq, released.ts)))
