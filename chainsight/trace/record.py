"""Each shipment's tamper-evident record: a hash chain (`chainsight.trace.chain`) of blocks that
hold every accepted event of the shipment and every settled alert transition, users' actions
included.

A block is one JSON entry: `{"entry": "block", "shipment_id", "seq", "prev", "recorded_at",
"devices", "rows", "events", "alerts"}`, hashed like any chain entry, where
- `rows` is the base64 of the shipment's GPS fixes and sensor readings in arrival order, packed
  little-endian as `ROW` (28 bytes each): `ts` (epoch ms), `device` (index into `devices`),
  `type` (0 gps, 1 sensor), `door` (-1 unknown, 0 closed, 1 open), then `a`, `b`: latitude and
  longitude of a fix, temperature (°C) and humidity (%RH) of a reading (NaN: not sent);
- `events` are its scans and orders, their contract fields as decoded, in arrival order;
- `alerts` are its settled alert records.
Unknown extra fields of events are not part of the record.

Events are gathered per shipment and a shipment's block is made once it holds `block_rows`
readings or its oldest has waited `block_ms` of stream time (None: only when full, or at the
end of the stream), so a block carries many events and the record costs little per event. The
engine keeps each chain's length and head, and what waits for the next block (durable state);
blocks go out in `Output.record` as `Written`: the line a store keeps, the entry's canonical
JSON with `"hash"` added last (reading it back and dropping `hash` gives the hashed bytes).
"""

from __future__ import annotations

import base64
from typing import NamedTuple

import msgspec
import numba
import numpy as np
import orjson

from chainsight.contract.events import GPS, SENSOR, Order, Scan
from chainsight.contract.times import iso
from chainsight.engine.state import NO_TS, State
from chainsight.ingest.rows import Rows
from chainsight.trace.chain import GENESIS, canonical, digest, first_broken

ROW = np.dtype([("ts", "<i8"), ("device", "<u2"), ("type", "u1"), ("door", "i1"),
                ("a", "<f8"), ("b", "<f8")])
LAYOUT = "ts:<i8 device:<u2 type:u1 door:i1 a:<f8 b:<f8"
PENDING = ("shipment", "device", "ts", "type", "door", "a", "b")
EMPTY = orjson.Fragment(b"[]")


class Written(NamedTuple):
    """An entry as made: its shipment, position and hash, and the JSON line to keep."""

    shipment_id: str
    seq: int
    hash: str
    line: bytes


@numba.njit(cache=True)
def _blocks(shipment: np.ndarray, device: np.ndarray, n_devices: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group rows (arrival order) by shipment, keeping arrival order within each: (order of
    the rows, start of each block in it, each row's device index within its block, the
    blocks' devices in first-appearance order, start of each block's devices)."""
    n = len(shipment)
    n_ship = 0
    for s in shipment:
        n_ship = max(n_ship, s + 1)
    counts = np.zeros(n_ship + 1, np.int64)
    for s in shipment:
        counts[s + 1] += 1
    for s in range(n_ship):
        counts[s + 1] += counts[s]
    fill = counts[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[shipment[i]]] = i
        fill[shipment[i]] += 1
    starts = counts[:-1][counts[1:] > counts[:-1]]
    local = np.empty(n, np.uint16)
    seen_in = np.full(n_devices, -1, np.int64)  # block a device was last given an index in
    index_of = np.zeros(n_devices, np.int64)
    codes = np.empty(n, np.int64)
    code_starts = np.empty(len(starts) + 1, np.int64)
    n_codes = 0
    for b in range(len(starts)):
        code_starts[b] = n_codes
        end = n if b + 1 == len(starts) else starts[b + 1]
        k = 0
        for j in range(starts[b], end):
            d = device[order[j]]
            if seen_in[d] != b:
                seen_in[d], index_of[d] = b, k
                codes[n_codes] = d
                n_codes += 1
                k += 1
            local[j] = index_of[d]
    code_starts[len(starts)] = n_codes
    return order, starts, local, codes[:n_codes], code_starts


class Recorder:
    """Appends blocks to the shipments' chains; knows each chain's length and head."""

    def __init__(self, block_rows: int = 1024, block_ms: int | None = 600_000) -> None:
        self.block_rows = block_rows
        self.block_ms = block_ms
        self.length: list[int] = []  # by shipment code
        self.heads: list[str] = []
        self._chunks: list[tuple[np.ndarray, ...]] = []  # readings waiting (PENDING columns)
        self._business: list[tuple[np.ndarray, list[Scan | Order]]] = []  # shipments, events
        self._alerts: dict[int, list[dict]] = {}  # shipment -> alert records waiting
        self._waiting = np.zeros(0, np.int64)  # per shipment: readings waiting
        self._since = np.zeros(0, np.int64)  # per shipment: stream time its wait began

    def head(self, shipment: int) -> tuple[int, str]:
        """(entries so far, hash of the newest) of a shipment's chain."""
        if shipment >= len(self.length):
            return 0, GENESIS
        return self.length[shipment], self.heads[shipment]

    def _grow(self, n: int) -> None:
        if n > len(self._waiting):
            self._waiting = np.concatenate([self._waiting, np.zeros(n - len(self._waiting),
                                                                    np.int64)])
            self._since = np.concatenate([self._since, np.full(n - len(self._since), NO_TS)])
        if n > len(self.length):
            self.length += [0] * (n - len(self.length))
            self.heads += [GENESIS] * (n - len(self.heads))

    def _started(self, shipments: np.ndarray, stream_time: int) -> None:
        """Note the shipments' new waiting readings (codes, repeated per reading)."""
        counts = np.bincount(shipments, minlength=len(self._waiting))
        self._waiting += counts
        self._since[(counts > 0) & (self._since == NO_TS)] = stream_time

    def add_events(self, rows: Rows, shipment: np.ndarray, business: dict[int, Scan | Order],
                   state: State, stream_time: int) -> None:
        """Gather accepted rows (arrival order) whose shipment (per row, -1: none) is known."""
        known = shipment >= 0
        if not known.any():
            return
        self._grow(len(state.shipments))
        readings = known & ((rows.kind == GPS) | (rows.kind == SENSOR))
        take = np.flatnonzero(readings)
        if len(take):
            sensor = rows.kind[take] == SENSOR
            ship = shipment[take].astype(np.int64)
            self._chunks.append((ship, rows.device[take], rows.ts[take], sensor.astype(np.uint8),
                                 np.where(sensor, rows.door[take], -1).astype(np.int8),
                                 np.where(sensor, rows.temp_c[take], rows.lat[take]),
                                 np.where(sensor, rows.humidity[take], rows.lon[take])))
            self._started(ship, stream_time)
        others = np.flatnonzero(known & ~readings)
        if len(others):
            ship = shipment[others].astype(np.int64)
            self._business.append((ship, [business[seq] for seq in rows.seq[others].tolist()]))
            self._started(ship, stream_time)

    def add_alerts(self, records: list[dict], state: State, stream_time: int) -> None:
        """Gather settled alert records."""
        index = state.shipments.index
        touched = []
        for record in records:
            s = index.get(record.get("shipment_id"))
            if s is not None:
                self._alerts.setdefault(s, []).append(record)
                touched.append(s)
        if touched:
            self._grow(len(state.shipments))
            self._started(np.array(touched, np.int64), stream_time)

    def blocks(self, state: State, now: int, stream_time: int,
               everything: bool = False) -> list[Written]:
        """The blocks now due (all that wait, with `everything`), appended to the chains."""
        waiting = self._since != NO_TS
        due = waiting & (self._waiting >= self.block_rows)
        if self.block_ms is not None:
            due |= waiting & (stream_time - self._since >= self.block_ms)
        if everything:
            due = waiting
        shipments = np.flatnonzero(due)
        if not len(shipments):
            return []
        pending = self._pending()
        chosen = np.zeros(len(due), bool)
        chosen[shipments] = True
        mine = chosen[pending[0]] if len(pending[0]) else np.zeros(0, bool)
        rows = [c[mine] for c in pending]
        self._chunks = [tuple(c[~mine] for c in pending)] if (~mine).any() else []
        self._waiting[shipments], self._since[shipments] = 0, NO_TS
        return self._write(shipments, rows, self._events_of(chosen), state, iso(now))

    def _events_of(self, chosen: np.ndarray) -> dict[int, orjson.Fragment]:
        """The waiting scans and orders of the chosen shipments (no longer waiting), as the
        JSON array of each shipment's (sorted keys, as `canonical` writes them)."""
        if not self._business:
            return {}
        ship = np.concatenate([s for s, _ in self._business])
        events = [e for _, chunk in self._business for e in chunk]
        mine = chosen[ship]
        self._business = [(ship[~mine], [e for e, m in zip(events, mine.tolist(), strict=True)
                                         if not m])] if not mine.all() else []
        picked = np.flatnonzero(mine)
        picked = picked[np.argsort(ship[picked], kind="stable")]
        codes = ship[picked]
        cuts = np.flatnonzero(np.diff(codes)) + 1
        out = {}
        for part in np.split(picked, cuts) if len(picked) else []:
            out[int(ship[part[0]])] = orjson.Fragment(msgspec.json.encode(
                [events[i] for i in part.tolist()], order="sorted"))
        return out

    def _write(self, shipments: np.ndarray, rows: list[np.ndarray],
               events: dict[int, orjson.Fragment], state: State,
               recorded_at: str) -> list[Written]:
        ship, device, ts, kind, door, a, b = rows
        order, starts, local, codes, code_starts = _blocks(ship, device.astype(np.int64),
                                                           max(len(state.devices), 1))
        packed = np.empty(len(order), ROW)
        packed["ts"], packed["device"], packed["type"] = ts[order], local, kind[order]
        packed["door"], packed["a"], packed["b"] = door[order], a[order], b[order]
        data = packed.tobytes()
        ends = np.append(starts[1:], len(order)) if len(starts) else starts
        span = {int(ship[order[s]]): (int(s), int(e), k) for k, (s, e)
                in enumerate(zip(starts.tolist(), ends.tolist(), strict=True))}
        names, device_names = state.shipments.names, state.devices.names
        out = []
        for s in shipments.tolist():
            first, last, k = span.get(s, (0, 0, -1))
            devices = [] if k < 0 else [device_names[c] for c in
                                        codes[code_starts[k]:code_starts[k + 1]].tolist()]
            chunk = data[first * ROW.itemsize:last * ROW.itemsize]
            entry = {"entry": "block", "devices": devices, "layout": LAYOUT,
                     "rows": base64.b64encode(chunk).decode(),
                     "events": events.get(s, EMPTY), "alerts": self._alerts.pop(s, [])}
            out.append(self._append(s, names[s], entry, recorded_at))
        return out

    def _append(self, s: int, name: str, entry: dict, recorded_at: str) -> Written:
        seq, prev = self.length[s], self.heads[s]
        entry.update(shipment_id=name, seq=seq, prev=prev, recorded_at=recorded_at)
        body = canonical(entry)
        hashed = digest(prev, body)
        self.length[s] += 1
        self.heads[s] = hashed
        return Written(name, seq, hashed, b'%b,"hash":"%b"}' % (body[:-1], hashed.encode()))

    def _pending(self) -> list[np.ndarray]:
        """The waiting readings' columns (`PENDING`), joined into one chunk."""
        if not self._chunks:
            return [np.empty(0, np.int64)] * len(PENDING)
        columns = [np.concatenate(c) for c in zip(*self._chunks, strict=True)]
        self._chunks = [tuple(columns)]
        return columns

    def dump_state(self) -> dict:
        pending = self._pending() if self._chunks else []
        ship = [s for s, _ in self._business]
        return {"length": self.length, "heads": self.heads,
                "pending": dict(zip(PENDING, pending, strict=True)) if pending else {},
                "business": [np.concatenate(ship) if ship else np.empty(0, np.int64),
                             msgspec.to_builtins([e for _, c in self._business for e in c])],
                "alerts": [[s, records] for s, records in self._alerts.items()],
                "waiting": self._waiting, "since": self._since}

    def load_state(self, data: dict) -> None:
        if len(data["length"]) != len(data["heads"]):
            raise ValueError("record lengths and heads differ in number")
        self.length, self.heads = list(data["length"]), list(data["heads"])
        pending = data["pending"]
        self._chunks = [tuple(np.asarray(pending[c]) for c in PENDING)] if pending else []
        ship, events = data["business"]
        self._business = [(np.asarray(ship, np.int64),
                           msgspec.convert(events, list[Scan | Order]))] if len(events) else []
        self._alerts = {int(s): records for s, records in data["alerts"]}
        self._waiting = np.asarray(data["waiting"], np.int64)
        self._since = np.asarray(data["since"], np.int64)


class Readings(NamedTuple):
    """A record's readings in record order: `device` names, and the `ROW` columns."""

    ts: np.ndarray
    device: np.ndarray
    type: np.ndarray
    door: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def of_type(self, kind: int) -> Readings:
        """Only fixes (0) or only sensor readings (1), in time order."""
        keep = np.flatnonzero(self.type == kind)
        keep = keep[np.argsort(self.ts[keep], kind="stable")]
        return Readings(*(column[keep] for column in self))


def readings(entries: list[dict]) -> Readings:
    """Every reading of a record's blocks."""
    parts, names = [], []
    for entry in entries:
        rows = np.frombuffer(base64.b64decode(entry.get("rows", "")), ROW)
        parts.append(rows)
        names.append(np.array(entry.get("devices") or [""], dtype=object)[rows["device"]])
    rows = np.concatenate(parts) if parts else np.empty(0, ROW)
    device = np.concatenate(names) if names else np.empty(0, object)
    return Readings(rows["ts"], device, rows["type"], rows["door"], rows["a"], rows["b"])


def business_events(entries: list[dict]) -> list[dict]:
    """The scans and orders of a record, in record order."""
    return [event for entry in entries for event in entry.get("events", ())]


def alert_records(entries: list[dict]) -> list[dict]:
    """The settled alert records of a record, in record order."""
    return [record for entry in entries for record in entry.get("alerts", ())]


def verify(entries: list[dict], length: int, head: str) -> dict:
    """Check a shipment's written record against the chain's length and head as the engine
    knows them: `{"intact", "entries", "head", "first_broken", "reason"}`."""
    broken = first_broken(entries)
    reason = None
    if broken is not None:
        reason = f"entry {broken} was modified, removed, inserted or moved"
    elif len(entries) != length or (entries[-1]["hash"] if entries else GENESIS) != head:
        broken = min(len(entries), length)
        reason = (f"the record has {len(entries)} entries where the chain has {length}"
                  if len(entries) != length else "the newest entry is not the chain's head")
    return {"intact": broken is None, "entries": len(entries), "head": head,
            "first_broken": broken, "reason": reason}
