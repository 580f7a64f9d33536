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
readings wait as columns, scans and orders as their JSON in one buffer that grows as batches
arrive (`WaitingTexts`; the JSON made on arrival, by replay's decode processes when they made
it there). A thread beside the engine's copies them there (the copies, and the fresh memory
they fill, do not hold up the engine: replay's bottleneck); blocks and snapshots wait for it.
When blocks are due, one Numba kernel packs their readings (`_pack`) and another writes all
their entries one after another into one buffer (`_block_parts`) but for each
one's rows' base64: its alerts' JSON (made only for shipments that have alerts), its devices'
and shipment's JSON names (made once per name, `JsonNames`), its events copied in. Each
block's line is then joined once from its two parts and its rows' base64, hashed on the way.
The engine keeps each chain's length and head, and what waits for the next block (durable
state); blocks go out in `Output.record` as `Written`: the line a store keeps, the entry's
canonical JSON with `"hash"` added last (reading it back and dropping `hash` gives the hashed
bytes).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import msgspec
import numba
import numpy as np
import orjson
import pybase64

from chainsight.asciibuf import decimal_digits, put, put_digits
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
# copies what waits for the records' blocks (readings, ~40 bytes each, and the scans' and
# orders' JSON) beside the engine's thread: the copies, and the fresh memory they fill, cost
# that thread nothing
_GATHERING = ThreadPoolExecutor(1, thread_name_prefix="chainsight-record")


class EventTexts(NamedTuple):
    """Scans' and orders' JSON as a record holds them (sorted keys, as `canonical` writes them),
    one after another in `text`: the i-th, of the row `keys[i]` (ascending), is
    text[starts[i]:ends[i]]. One buffer for a batch, not an object per event (cheap to pass
    between processes, in shared memory as the batch's columns are, and to gather per
    shipment)."""

    keys: np.ndarray
    text: np.ndarray  # uint8
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
    return EventTexts(np.array(keys, np.int64), np.frombuffer(text, np.uint8),
                      np.concatenate([[0], ends[:-1]]).astype(np.int64), ends)


class Written(NamedTuple):
    """An entry as made: its shipment, position and hash, and the JSON line to keep."""

    shipment_id: str
    seq: int
    hash: str
    line: bytes


@numba.njit(cache=True, nogil=True)
def _gather(kind: np.ndarray, shipment: np.ndarray, device: np.ndarray, ts: np.ndarray,
            door: np.ndarray, temp_c: np.ndarray, humidity: np.ndarray, lat: np.ndarray,
            lon: np.ndarray, n: int, p_shipment: np.ndarray, p_device: np.ndarray,
            p_ts: np.ndarray, p_type: np.ndarray, p_door: np.ndarray, p_a: np.ndarray,
            p_b: np.ndarray) -> int:
    """Append the GPS fixes and sensor readings among rows (arrival order) whose shipment is
    known to the waiting columns (`PENDING`, the first `n` taken, room for every row); returns
    the new number of waiting readings. Runs without the GIL (`Recorder`'s gathering thread)."""
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
    return n


@numba.njit(cache=True)
def _pack(chosen: np.ndarray, n: int, shipment: np.ndarray, device: np.ndarray,
          ts: np.ndarray, kind: np.ndarray, door: np.ndarray, a: np.ndarray, b: np.ndarray,
          n_devices: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack the waiting readings (the first `n` of the `PENDING` columns, arrival order) of the
    chosen shipments as `ROW`s, grouped by shipment and in arrival order within each, a row's
    device as its index among its block's devices; the others move up in the columns, in
    order. Returns (how many still wait, the packed rows, each block's shipment, where each
    block starts and the last ends, the blocks' devices in first-appearance order, where each
    block's devices start and the last's end)."""
    counts = np.zeros(len(chosen) + 1, np.int64)
    for i in range(n):
        if chosen[shipment[i]]:
            counts[shipment[i] + 1] += 1
    for s in range(len(chosen)):
        counts[s + 1] += counts[s]
    fill = counts[:-1].copy()
    packed = np.empty(counts[-1], ROW)
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
        for j in range(bounds[k], bounds[k + 1]):
            d = grouped_device[j]
            if seen_in[d] != k:  # its index: the block's devices given one before it
                seen_in[d], index_of[d] = k, n_codes - code_bounds[k]
                codes[n_codes] = d
                n_codes += 1
            packed[j].device = index_of[d]
    code_bounds[-1] = n_codes
    return kept, packed, block_ship, bounds, codes[:n_codes], code_bounds


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


@numba.njit(cache=True)
def _block_parts(shipments: np.ndarray, pieces: tuple, alerts: np.ndarray,
                 alerts_at: np.ndarray, event_ship: np.ndarray, event_starts: np.ndarray,
                 event_ends: np.ndarray, event_text: np.ndarray, block_of: np.ndarray,
                 codes: np.ndarray, code_bounds: np.ndarray, device_json: np.ndarray,
                 device_at: np.ndarray, prev: np.ndarray, seq: np.ndarray,
                 name_json: np.ndarray, name_at: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The blocks' entries as `canonical` writes them, but for their rows' text (base64), one
    after another: the i-th, of shipment `shipments[i]` (ascending), is `{"alerts":…,"rows":"`
    at out[at[i, 0]:at[i, 1]], its rows' text goes next, then `","seq":…,"shipment_id":…}` at
    out[at[i, 1]:at[i, 2]]. Returns (out, at, how many events still wait).

    `pieces` are the constant parts between the fields (`_pieces`); a block's alerts are the
    JSON array alerts[alerts_at[i, 0]:alerts_at[i, 1]] (-1: none); its events are those of
    its shipment among the waiting ones (arrival order; event_text[event_starts[j]:
    event_ends[j]] of shipment event_ship[j]), the others move up to the front of
    `event_text` and of the arrays; its devices' JSON names are device_json[device_at[c]:
    device_at[c + 1]] of the codes[code_bounds[k]:code_bounds[k + 1]] (k = block_of[i], -1:
    no devices); `prev` is its chain's head (64 hex digits), `seq` its place in its chain,
    and its shipment's JSON name is name_json[name_at[s]:name_at[s + 1]]."""
    index = np.full(len(name_at) - 1, -1, np.int64)  # shipment -> its block
    for i in range(len(shipments)):
        index[shipments[i]] = i
    events_size = np.zeros(len(shipments), np.int64)  # their texts and a comma after each
    for j in range(len(event_ship)):
        i = index[event_ship[j]]
        if i >= 0:
            events_size[i] += event_ends[j] - event_starts[j] + 1
    fixed = 64 + 2 + 2 + 1  # the head, the brackets, the closing brace
    for piece in pieces:
        fixed += len(piece)
    size = np.empty(len(shipments), np.int64)
    total = 0
    for i in range(len(shipments)):
        s, k = shipments[i], block_of[i]
        n = fixed + max(events_size[i] - 1, 0) + decimal_digits(seq[i])
        n += name_at[s + 1] - name_at[s]
        n += alerts_at[i, 1] - alerts_at[i, 0] if alerts_at[i, 0] >= 0 else 2
        if k >= 0:
            for j in range(code_bounds[k], code_bounds[k + 1]):
                n += device_at[codes[j] + 1] - device_at[codes[j]] + 1
            n -= code_bounds[k + 1] > code_bounds[k]  # no comma after the last
        size[i] = n
        total += n
    out = np.empty(total, np.uint8)
    at = np.empty((len(shipments), 3), np.int64)
    events_at = np.empty(len(shipments), np.int64)  # where each one's events go
    events_end = np.empty(len(shipments), np.int64)
    o = 0
    for i in range(len(shipments)):
        s, k = shipments[i], block_of[i]
        at[i, 0] = o
        o = put(out, o, pieces[0])
        if alerts_at[i, 0] >= 0:
            o = put(out, o, alerts[alerts_at[i, 0]:alerts_at[i, 1]])
        else:
            o = put(out, o, b"[]")
        o = put(out, o, pieces[1])
        if k >= 0 and code_bounds[k + 1] > code_bounds[k]:
            for j in range(code_bounds[k], code_bounds[k + 1]):
                out[o] = 44 if j > code_bounds[k] else 91  # , or [
                o = put(out, o + 1, device_json[device_at[codes[j]]:device_at[codes[j] + 1]])
            out[o] = 93  # ]
            o += 1
        else:
            o = put(out, o, b"[]")
        o = put(out, o, pieces[2])
        out[o] = 91  # [, then the events (`events_at`: where the next goes, after a byte)
        events_at[i] = o
        o += max(events_size[i], 1)
        events_end[i] = o  # the closing bracket's place
        o += 1
        o = put(out, o, pieces[3])
        o = put(out, o, prev[i])
        o = put(out, o, pieces[4])
        at[i, 1] = o
        o = put(out, o, pieces[5])
        o = put_digits(out, o, seq[i], decimal_digits(seq[i]))
        o = put(out, o, pieces[6])
        o = put(out, o, name_json[name_at[s]:name_at[s + 1]])
        out[o] = 125  # }
        o += 1
        at[i, 2] = o
    kept = kept_at = 0
    for j in range(len(event_ship)):
        s, a, b = event_ship[j], event_starts[j], event_ends[j]
        i = index[s]
        if i >= 0:  # after the "[" or the comma before it (a slice copies faster than `put`)
            o = events_at[i] + 1
            out[o:o + b - a] = event_text[a:b]
            events_at[i] = o + b - a
            out[o + b - a] = 44  # ,
        else:
            put(event_text, kept_at, event_text[a:b])  # a >= kept_at: moves up, in order
            event_ship[kept], event_starts[kept], event_ends[kept] = s, kept_at, kept_at + b - a
            kept_at += b - a
            kept += 1
    for i in range(len(shipments)):
        out[events_end[i]] = 93  # ]
    return out, at, kept


def _pieces(recorded_at: bytes) -> tuple[np.ndarray, ...]:
    """The constant parts of a block's entry, around its fields (`_block_parts`)."""
    return tuple(np.frombuffer(piece, np.uint8) for piece in (
        b'{"alerts":', b',"devices":', b',"entry":"block","events":',
        b',"layout":"%b","prev":"' % LAYOUT.encode(),
        b'","recorded_at":"%b","rows":"' % recorded_at, b'","seq":', b',"shipment_id":'))


class JsonNames:
    """A registry's names as JSON strings one after another, the i-th at text[at[i]:at[i + 1]],
    each made once: the registry's names only grow (a registry given a new list of names,
    as a restored state's, is made anew)."""

    def __init__(self) -> None:
        self._names: list[str] | None = None  # the list they were made from
        self.text, self.at = np.frombuffer(b"", np.uint8), np.zeros(1, np.int64)

    def update(self, names: list[str]) -> None:
        """Make the names not made yet."""
        if names is not self._names:
            self._names, self.text, self.at = names, np.frombuffer(b"", np.uint8), self.at[:1]
        made = len(self.at) - 1
        if len(names) > made:
            new = list(map(orjson.dumps, names[made:]))
            self.text = np.frombuffer(b"".join([self.text.tobytes(), *new]), np.uint8)
            self.at = np.concatenate([self.at, self.at[-1] + np.cumsum(list(map(len, new)))])


def _with_room(array: np.ndarray, used: int, more: int) -> np.ndarray:
    """`array`, or a larger copy of its first `used` items, with room for `more` after them
    (doubling, as a list grows)."""
    if used + more <= len(array):
        return array
    grown = np.empty(max(2 * len(array), used + more), array.dtype)
    grown[:used] = array[:used]
    return grown


class WaitingTexts:
    """Scans' and orders' JSON waiting for their blocks, in arrival order, in one buffer that
    grows as batches arrive (nothing to join when blocks are made): the i-th of the first `n`,
    of shipment ship[i], is text[starts[i]:ends[i]]; the first `size` bytes of `text` hold
    them."""

    def __init__(self) -> None:
        self.ship = np.empty(0, np.int64)
        self.starts = np.empty(0, np.int64)
        self.ends = np.empty(0, np.int64)
        self.text = np.empty(0, np.uint8)
        self.n = self.size = 0

    def add(self, ship: np.ndarray, starts: np.ndarray, ends: np.ndarray, text: np.ndarray
            ) -> None:
        """Append texts: the i-th, of shipment ship[i], text[starts[i]:ends[i]]."""
        n, size = self.n, self.size
        self.ship, self.starts, self.ends = (_with_room(a, n, len(ship))
                                             for a in (self.ship, self.starts, self.ends))
        self.text = _with_room(self.text, size, len(text))
        self.ship[n:n + len(ship)] = ship
        self.starts[n:n + len(ship)] = starts + size
        self.ends[n:n + len(ship)] = ends + size
        self.text[size:size + len(text)] = text
        self.n, self.size = n + len(ship), size + len(text)

    def waiting(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ship, starts, ends, text) of the texts waiting (views of the buffers)."""
        return (self.ship[:self.n], self.starts[:self.n], self.ends[:self.n],
                self.text[:self.size])

    def keep(self, kept: int) -> None:
        """Keep the first `kept` texts only (those still waiting, moved to the front)."""
        self.n, self.size = kept, int(self.ends[kept - 1]) if kept else 0


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
        self._gathering: Future | None = None  # readings still being copied to the columns
        self._texts = WaitingTexts()  # scans and orders waiting
        self._alerts: dict[int, list[dict]] = {}  # shipment -> alert records waiting
        self._waiting = np.zeros(0, np.int64)  # per shipment: entries waiting
        self._since = np.zeros(0, np.int64)  # per shipment: stream time its wait began
        self._device_json, self._name_json = JsonNames(), JsonNames()  # by device, shipment

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

    def _copy_waiting(self, readings: tuple[np.ndarray, ...],
                      texts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
                      ) -> None:
        """Append a batch's readings to the waiting columns (`_gather`: kind, shipment, device,
        ts, door, temp_c, humidity, lat, lon; room made first) and its scans' and orders' texts
        to the waiting ones (`WaitingTexts.add`)."""
        self._columns = tuple(_with_room(column, self._n, len(readings[0]))
                              for column in self._columns)
        self._n = _gather(*readings, self._n, *self._columns)
        if texts is not None:
            self._texts.add(*texts)

    def _gathered(self) -> None:
        """Wait until the readings and texts given so far wait in the columns and buffer."""
        if self._gathering is not None:
            self._gathering.result()
            self._gathering = None

    def _started(self, shipments: np.ndarray, stream_time: int) -> None:
        """Note the shipments' new waiting entries (codes, repeated per entry)."""
        self._waiting += np.bincount(shipments, minlength=len(self._waiting))
        self._since[shipments[self._since[shipments] == NO_TS]] = stream_time

    def add_events(self, rows: Rows, shipment: np.ndarray, business: dict[int, Scan | Order],
                   texts: EventTexts | None, state: State, stream_time: int) -> None:
        """Gather accepted rows (arrival order) whose shipment (per row, -1: none) is known;
        `texts` has the record's JSON of scans and orders (keys: seq) when already made. The
        gathering thread copies the readings and the texts after this returns (no stage of the
        engine changes a batch's columns)."""
        if not len(rows):
            return
        self._grow(len(state.shipments))
        known = shipment >= 0
        self._started(shipment[known], stream_time)
        others = np.flatnonzero((rows.kind >= SCAN) & known)
        business_texts = None
        if len(others):
            texts, at = _texts_of(rows.seq[others], business, texts)
            business_texts = (shipment[others], texts.starts[at], texts.ends[at], texts.text)
        self._gathered()  # one batch at a time, in order
        self._gathering = _GATHERING.submit(self._copy_waiting, (
            rows.kind, shipment, rows.device, rows.ts, rows.door, rows.temp_c, rows.humidity,
            rows.lat, rows.lon), business_texts)

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
        self._gathered()
        self._n, packed, block_ship, bounds, codes, code_bounds = _pack(
            due, self._n, *self._columns, len(state.devices))
        block_of = np.searchsorted(block_ship, shipments)  # where each one's rows are
        has_rows = block_of < len(block_ship)
        has_rows[has_rows] = block_ship[block_of[has_rows]] == shipments[has_rows]
        block_of[~has_rows] = -1
        self._device_json.update(state.devices.names)
        self._name_json.update(state.shipments.names)
        alerts, alerts_at = self._alerts_of(shipments)
        event_ship, event_starts, event_ends, event_text = self._texts.waiting()
        heads = "".join([self.heads[s] for s in shipments.tolist()]).encode()
        text, at, kept = _block_parts(
            shipments, _pieces(iso(now).encode()), alerts, alerts_at, event_ship, event_starts,
            event_ends, event_text, block_of, codes, code_bounds, self._device_json.text,
            self._device_json.at, np.frombuffer(heads, np.uint8).reshape(-1, 64),
            np.array(self.length, np.int64)[shipments], self._name_json.text, self._name_json.at)
        self._texts.keep(kept)
        return self._chain(shipments, state.shipments.names, text, at, block_of, packed, bounds)

    def _alerts_of(self, shipments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The waiting alert records of the shipments (no longer waiting): the JSON array of
        each one's at text[at[i, 0]:at[i, 1]], at[i] (-1, -1) for one without any."""
        at = np.full((len(shipments), 2), -1, np.int64)
        due = [(i, self._alerts.pop(s)) for i, s in enumerate(shipments.tolist())
               if s in self._alerts] if self._alerts else []
        if not due:
            return np.frombuffer(b"", np.uint8), at
        texts = [canonical(records) for _, records in due]
        ends = np.cumsum([len(t) for t in texts])
        rows = np.array([i for i, _ in due], np.int64)
        at[rows, 0], at[rows, 1] = ends - [len(t) for t in texts], ends
        return np.frombuffer(b"".join(texts), np.uint8), at

    def _chain(self, shipments: np.ndarray, names: list[str], text: np.ndarray, at: np.ndarray,
               block_of: np.ndarray, packed: np.ndarray, bounds: np.ndarray) -> list[Written]:
        """Append blocks to their chains: the base64 of each one's rows (packed[bounds[k]:
        bounds[k + 1]], k = block_of[i]; none for k = -1) goes between its parts
        (`_block_parts`), the whole is hashed after its chain's head and made into its line."""
        text, data = memoryview(text), memoryview(packed.view(np.uint8))
        bounds = (bounds * ROW.itemsize).tolist()
        length = self.length
        out = []
        for s, (a, m, e), k in zip(shipments.tolist(), at.tolist(), block_of.tolist(),
                                   strict=True):
            rows = pybase64.b64encode(data[bounds[k]:bounds[k + 1]]) if k >= 0 else b""
            hashed = digest(self.heads[s], text[a:m], rows, text[m:e])
            out.append(Written(names[s], length[s], hashed, b"".join(
                (text[a:m], rows, text[m:e - 1], b',"hash":"%b"}' % hashed.encode()))))
            length[s] += 1
            self.heads[s] = hashed
        return out

    def dump_state(self) -> dict:
        self._gathered()
        pending = [c[:self._n] for c in self._columns] if self._n else []
        ship, starts, ends, text = self._texts.waiting()
        text = memoryview(text)
        return {"length": self.length, "heads": self.heads,
                "pending": dict(zip(PENDING, pending, strict=True)) if pending else {},
                "business": [ship, [orjson.loads(text[a:b]) for a, b in
                                    zip(starts.tolist(), ends.tolist(), strict=True)]],
                "alerts": [[s, records] for s, records in self._alerts.items()],
                "waiting": self._waiting, "since": self._since}

    def load_state(self, data: dict) -> None:
        self._gathered()
        if len(data["length"]) != len(data["heads"]):
            raise ValueError("record lengths and heads differ in number")
        self.length, self.heads = list(data["length"]), list(data["heads"])
        pending = data["pending"]
        self._columns = tuple(np.array(pending[c] if pending else (), t)
                              for c, t in zip(PENDING, PENDING_TYPES, strict=True))
        self._n = len(self._columns[0])
        ship, events = data["business"]
        texts = event_texts(list(range(len(events))), msgspec.convert(events, list[Scan | Order]))
        self._texts = WaitingTexts()
        if len(events):
            self._texts.add(np.asarray(ship, np.int64), texts.starts, texts.ends, texts.text)
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
