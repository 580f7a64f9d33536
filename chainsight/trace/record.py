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
end of the stream), so a block carries many events and the record costs little per event:
readings wait as columns, scans and orders as their JSON in one buffer per batch (made on
arrival, by replay's decode processes when they made it there), and Numba kernels gather each
due shipment's part. A block's line is put together once from its parts and the rows' base64
(no copy of the entry's JSON on the way). The engine keeps each chain's length and head, and
what waits for the next block (durable state); blocks go out in `Output.record` as `Written`:
the line a store keeps, the entry's canonical JSON with `"hash"` added last (reading it back
and dropping `hash` gives the hashed bytes).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec
import numba
import numpy as np
import orjson
import pybase64

from chainsight.contract.events import GPS, SCAN, SENSOR, Order, Scan
from chainsight.contract.times import iso
from chainsight.engine.state import NO_TS, State
from chainsight.ingest.rows import Rows
from chainsight.trace.chain import GENESIS, canonical, digest, first_broken

ROW = np.dtype([("ts", "<i8"), ("device", "<u2"), ("type", "u1"), ("door", "i1"),
                ("a", "<f8"), ("b", "<f8")])
LAYOUT = "ts:<i8 device:<u2 type:u1 door:i1 a:<f8 b:<f8"
PENDING = ("shipment", "device", "ts", "type", "door", "a", "b")
PENDING_TYPES = (np.int64, np.int32, np.int64, np.uint8, np.int8, np.float64, np.float64)
_EVENT_JSON = msgspec.json.Encoder(order="sorted")  # a scan or order as `canonical` writes it


class EventTexts(NamedTuple):
    """Scans' and orders' JSON as a record holds them (sorted keys, as `canonical` writes them),
    one after another in `text`: the i-th, of the row
    `keys[i]` (ascending), is text[starts[i]:ends[i]]. One buffer for a batch, not an object
    per event (cheap to pass between processes, and to gather per shipment)."""

    keys: np.ndarray
    text: bytes
    starts: np.ndarray
    ends: np.ndarray

    def moved(self, by: int) -> EventTexts:
        """The same texts with `by` added to their keys (rows of a batch to sequence numbers)."""
        return self._replace(keys=self.keys + by)


def event_texts(keys: list[int], events: list[Scan | Order]) -> EventTexts:
    """The record's JSON of events (keys ascending)."""
    text, ends = bytearray(), []
    for event in events:
        _EVENT_JSON.encode_into(event, text, -1)
        ends.append(len(text))
    ends = np.array(ends, np.int64)
    return EventTexts(np.array(keys, np.int64), bytes(text),
                      np.concatenate([[0], ends[:-1]]).astype(np.int64), ends)


class Written(NamedTuple):
    """An entry as made: its shipment, position and hash, and the JSON line to keep."""

    shipment_id: str
    seq: int
    hash: str
    line: bytes


@numba.njit(cache=True)
def _gather(kind: np.ndarray, shipment: np.ndarray, device: np.ndarray, ts: np.ndarray,
            door: np.ndarray, temp_c: np.ndarray, humidity: np.ndarray, lat: np.ndarray,
            lon: np.ndarray, n: int, p_shipment: np.ndarray, p_device: np.ndarray,
            p_ts: np.ndarray, p_type: np.ndarray, p_door: np.ndarray, p_a: np.ndarray,
            p_b: np.ndarray, waiting: np.ndarray, since: np.ndarray, stream_time: int) -> int:
    """Append the GPS fixes and sensor readings among rows (arrival order) whose shipment is
    known to the waiting columns (`PENDING`, the first `n` taken, room for every row), counting
    them as waiting; returns the new number of waiting readings."""
    for i in range(len(kind)):
        s = shipment[i]
        if s < 0 or (kind[i] != GPS and kind[i] != SENSOR):
            continue
        sensor = kind[i] == SENSOR
        p_shipment[n], p_device[n], p_ts[n] = s, device[i], ts[i]
        p_type[n] = 1 if sensor else 0
        p_door[n] = door[i] if sensor else -1
        p_a[n] = temp_c[i] if sensor else lat[i]
        p_b[n] = humidity[i] if sensor else lon[i]
        n += 1
        waiting[s] += 1
        if since[s] == NO_TS:
            since[s] = stream_time
    return n


@numba.njit(cache=True)
def _pack(chosen: np.ndarray, n: int, shipment: np.ndarray, device: np.ndarray,
          ts: np.ndarray, kind: np.ndarray, door: np.ndarray, a: np.ndarray, b: np.ndarray,
          n_devices: int, packed: np.ndarray
          ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack the waiting readings (the first `n` of the `PENDING` columns, arrival order) of the
    chosen shipments into `packed` (`ROW`), grouped by shipment and in arrival order within
    each, a row's device as its index among its block's devices; the others move up in the
    columns, in order. Returns (how many still wait, each block's shipment, where each block
    starts and the last ends, the blocks' devices in first-appearance order, where each
    block's devices start and the last's end)."""
    counts = np.zeros(len(chosen) + 1, np.int64)
    for i in range(n):
        if chosen[shipment[i]]:
            counts[shipment[i] + 1] += 1
    for s in range(len(chosen)):
        counts[s + 1] += counts[s]
    fill = counts[:-1].copy()
    grouped_device = np.empty(len(packed), np.int64)
    kept = 0
    for i in range(n):  # in arrival order: each row to the next place of its shipment's block
        s = shipment[i]
        if chosen[s]:
            j = fill[s]
            fill[s] += 1
            grouped_device[j] = device[i]
            row = packed[j]
            row.ts, row.type, row.door, row.a, row.b = ts[i], kind[i], door[i], a[i], b[i]
        else:
            shipment[kept], device[kept], ts[kept], kind[kept] = s, device[i], ts[i], kind[i]
            door[kept], a[kept], b[kept] = door[i], a[i], b[i]
            kept += 1
    block_ship = np.flatnonzero(counts[1:] > counts[:-1])
    bounds = np.empty(len(block_ship) + 1, np.int64)
    bounds[:-1], bounds[-1] = counts[block_ship], len(packed)
    seen_in = np.full(n_devices, -1, np.int64)  # block a device was last given an index in
    index_of = np.zeros(n_devices, np.int64)
    codes = np.empty(len(packed), np.int64)
    code_bounds = np.empty(len(bounds), np.int64)
    n_codes = 0
    for k in range(len(block_ship)):
        code_bounds[k] = n_codes
        local = 0
        for j in range(bounds[k], bounds[k + 1]):
            d = grouped_device[j]
            if seen_in[d] != k:
                seen_in[d], index_of[d] = k, local
                codes[n_codes] = d
                n_codes += 1
                local += 1
            packed[j].device = index_of[d]
    code_bounds[-1] = n_codes
    return kept, block_ship, bounds, codes[:n_codes], code_bounds


@numba.njit(cache=True)
def _group_texts(chosen: np.ndarray, shipment: np.ndarray, starts: np.ndarray,
                 ends: np.ndarray, text: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The waiting events (arrival order; `text[starts[i]:ends[i]]` of shipment `shipment[i]`)
    of the chosen shipments as one JSON array each, written one after another; the others'
    texts move up to the front of `text`, their entries to the front of the arrays. Returns
    (the arrays, where each chosen shipment's starts (-1: no events), where each ends, how many
    events still wait)."""
    size = np.zeros(len(chosen), np.int64)
    for i in range(len(shipment)):
        if chosen[shipment[i]]:
            size[shipment[i]] += ends[i] - starts[i] + 1  # its text and a comma or bracket
    first = np.full(len(chosen), -1, np.int64)
    last = np.full(len(chosen), -1, np.int64)
    total = 0
    for s in range(len(chosen)):
        if size[s]:
            first[s], last[s] = total, total
            total += size[s] + 1
    out = np.empty(total, np.uint8)
    kept = kept_at = 0
    for i in range(len(shipment)):
        s, a, b = shipment[i], starts[i], ends[i]
        if chosen[s]:
            at = last[s]
            out[at] = ord("[") if at == first[s] else ord(",")
            out[at + 1:at + 1 + b - a] = text[a:b]
            last[s] = at + 1 + b - a
        else:
            text[kept_at:kept_at + b - a] = text[a:b]  # a >= kept_at: moves up, in order
            shipment[kept], starts[kept], ends[kept] = s, kept_at, kept_at + b - a
            kept_at += b - a
            kept += 1
    for s in range(len(chosen)):
        if first[s] >= 0:
            out[last[s]] = ord("]")
            last[s] += 1
    return out, first, last, kept


def _texts_of(seqs: np.ndarray, business: dict[int, Scan | Order], texts: EventTexts | None
              ) -> tuple[EventTexts, np.ndarray]:
    """Texts holding the record's JSON of the events `seqs`, and where each is in them: those
    the decoding made, or made here when it did not make them all."""
    if texts is not None and len(texts.keys):
        at = np.minimum(np.searchsorted(texts.keys, seqs), len(texts.keys) - 1)
        if np.array_equal(texts.keys[at], seqs):
            return texts, at
    return (event_texts(seqs.tolist(), [business[seq] for seq in seqs.tolist()]),
            np.arange(len(seqs)))


def _block_parts(alerts: list[dict], devices: list[str], events: bytes, prev: str,
                 recorded_at: bytes, seq: int, shipment_id: str) -> tuple[bytes, ...]:
    """A block's entry as `canonical` writes it, in the parts around its rows' text (base64):
    before its events (a JSON array), after them up to the rows' text, and after that but the
    closing brace. Made here part by part, in canonical order (sorted keys), so the rows and
    events are copied once, into the line."""
    return (b'{"alerts":%b,"devices":%b,"entry":"block","events":'
            % (canonical(alerts), orjson.dumps(devices)),
            events,
            b',"layout":"%b","prev":"%b","recorded_at":"%b","rows":"'
            % (LAYOUT.encode(), prev.encode(), recorded_at),
            b'","seq":%d,"shipment_id":%b' % (seq, orjson.dumps(shipment_id)))


class Recorder:
    """Appends blocks to the shipments' chains; knows each chain's length and head."""

    def __init__(self, block_rows: int = 1024, block_ms: int | None = 600_000) -> None:
        self.block_rows = block_rows
        self.block_ms = block_ms
        self.length: list[int] = []  # by shipment code
        self.heads: list[str] = []
        # readings waiting: the first `_n` rows of the `PENDING` columns, in arrival order
        self._columns = tuple(np.empty(0, t) for t in PENDING_TYPES)
        self._n = 0
        # scans and orders waiting: (their shipments, where their JSON is, the buffer)
        self._texts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._alerts: dict[int, list[dict]] = {}  # shipment -> alert records waiting
        self._waiting = np.zeros(0, np.int64)  # per shipment: entries waiting
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

    def _room(self, rows: int) -> None:
        """Room in the waiting columns for `rows` more readings (doubling, as a list grows)."""
        if self._n + rows > len(self._columns[0]):
            size = max(2 * len(self._columns[0]), self._n + rows)
            grown = tuple(np.empty(size, t) for t in PENDING_TYPES)
            for old, new in zip(self._columns, grown, strict=True):
                new[:self._n] = old[:self._n]
            self._columns = grown

    def _started(self, shipments: np.ndarray, stream_time: int) -> None:
        """Note the shipments' new waiting entries (codes, repeated per entry)."""
        np.add.at(self._waiting, shipments, 1)
        self._since[shipments[self._since[shipments] == NO_TS]] = stream_time

    def add_events(self, rows: Rows, shipment: np.ndarray, business: dict[int, Scan | Order],
                   texts: EventTexts | None, state: State, stream_time: int) -> None:
        """Gather accepted rows (arrival order) whose shipment (per row, -1: none) is known;
        `texts` has the record's JSON of scans and orders (keys: seq) when already made."""
        if not len(rows):
            return
        self._grow(len(state.shipments))
        self._room(len(rows))
        self._n = _gather(rows.kind, shipment, rows.device, rows.ts, rows.door, rows.temp_c,
                          rows.humidity, rows.lat, rows.lon, self._n, *self._columns,
                          self._waiting, self._since, stream_time)
        others = np.flatnonzero((rows.kind >= SCAN) & (shipment >= 0))
        if len(others):
            texts, at = _texts_of(rows.seq[others], business, texts)
            self._texts.append((shipment[others].astype(np.int64), texts.starts[at],
                                texts.ends[at], np.frombuffer(texts.text, np.uint8)))
            self._started(shipment[others], stream_time)

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
        self._waiting[shipments], self._since[shipments] = 0, NO_TS
        n, columns = self._n, self._columns
        packed = np.empty(int(due[columns[0][:n]].sum()), ROW)
        self._n, block_ship, bounds, codes, code_bounds = _pack(
            due, n, *columns, len(state.devices), packed)
        data = memoryview(packed.view(np.uint8))
        span = {s: k for k, s in enumerate(block_ship.tolist())}  # shipment -> its block
        bounds = (bounds * ROW.itemsize).tolist()
        names, device_names = state.shipments.names, state.devices.names
        recorded_at = iso(now).encode()
        arrays, first, last = self._events_of(due)
        blocks = []
        for s, a, b in zip(shipments.tolist(), first[shipments].tolist(),
                           last[shipments].tolist(), strict=True):
            k = span.get(s)
            devices = [] if k is None else [device_names[c] for c in
                                            codes[code_bounds[k]:code_bounds[k + 1]].tolist()]
            parts = _block_parts(self._alerts.pop(s, []), devices,
                                 b"[]" if a < 0 else arrays[a:b],
                                 self.heads[s], recorded_at, self.length[s], names[s])
            blocks.append((s, names[s], parts, b"" if k is None else data[bounds[k]:bounds[k + 1]]))
        return self._chain(blocks)

    def _events_of(self, chosen: np.ndarray) -> tuple[memoryview, np.ndarray, np.ndarray]:
        """The waiting scans and orders of the chosen shipments (no longer waiting), as the
        JSON array of each (`_group_texts`), the others kept as one buffer."""
        if not self._texts:
            return memoryview(b""), np.full(len(chosen), -1), np.full(len(chosen), -1)
        ship, starts, ends, text = self._joined_texts()
        arrays, first, last, kept = _group_texts(chosen, ship, starts, ends, text)
        self._texts = [(ship[:kept], starts[:kept], ends[:kept],
                        text[:ends[kept - 1]].copy())] if kept else []
        return memoryview(arrays), first, last

    def _joined_texts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The waiting scans' and orders' chunks as one (a new buffer, the arrays copied)."""
        sizes = [len(text) for *_, text in self._texts]
        shift = np.repeat(np.cumsum([0, *sizes[:-1]]),
                          [len(ship) for ship, *_ in self._texts])
        return (np.concatenate([ship for ship, *_ in self._texts]),
                np.concatenate([starts for _, starts, _, _ in self._texts]) + shift,
                np.concatenate([ends for _, _, ends, _ in self._texts]) + shift,
                np.concatenate([text for *_, text in self._texts]))

    def _chain(self, blocks: list[tuple[int, str, tuple[bytes, ...], memoryview]]
               ) -> list[Written]:
        """Append blocks to their chains: the base64 of each one's rows goes between its parts
        (`_block_parts`), the whole is hashed after its chain's head and made into its line."""
        out = []
        for s, name, (before, events, middle, after), raw in blocks:
            rows = pybase64.b64encode(raw)
            hashed = digest(self.heads[s], before, events, middle, rows, after, b"}")
            out.append(Written(name, self.length[s], hashed, b"".join(
                (before, events, middle, rows, after, b',"hash":"%b"}' % hashed.encode()))))
            self.length[s] += 1
            self.heads[s] = hashed
        return out

    def dump_state(self) -> dict:
        pending = [c[:self._n] for c in self._columns] if self._n else []
        ship, starts, ends, text = self._joined_texts() if self._texts else \
            (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), b"")
        text = memoryview(text)
        return {"length": self.length, "heads": self.heads,
                "pending": dict(zip(PENDING, pending, strict=True)) if pending else {},
                "business": [ship, [orjson.loads(text[a:b]) for a, b in
                                    zip(starts.tolist(), ends.tolist(), strict=True)]],
                "alerts": [[s, records] for s, records in self._alerts.items()],
                "waiting": self._waiting, "since": self._since}

    def load_state(self, data: dict) -> None:
        if len(data["length"]) != len(data["heads"]):
            raise ValueError("record lengths and heads differ in number")
        self.length, self.heads = list(data["length"]), list(data["heads"])
        pending = data["pending"]
        self._columns = tuple(np.array(pending[c] if pending else (), t)
                              for c, t in zip(PENDING, PENDING_TYPES, strict=True))
        self._n = len(self._columns[0])
        ship, events = data["business"]
        texts = event_texts(list(range(len(events))), msgspec.convert(events, list[Scan | Order]))
        self._texts = [(np.asarray(ship, np.int64), texts.starts, texts.ends,
                        np.frombuffer(texts.text, np.uint8).copy())] if len(events) else []
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
        rows = np.frombuffer(pybase64.b64decode(entry.get("rows", "")), ROW)
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
