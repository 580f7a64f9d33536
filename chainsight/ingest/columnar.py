"""Stateless decoding of raw lines into columns: the part of ingest that can run in any process.

Nearly every event on the wire is a flat gps or sensor object. A Numba scanner decodes those
straight from the bytes into columns, with no Python object per event: it accepts a line only
when it is sure msgspec would accept it and decode the same values (plain ASCII strings, numbers
of at most 15 digits without exponent — exact under IEEE division — RFC 3339 times or epoch ms,
each field at most once, no unknown field). Every other line (scans, orders, anything unusual or
invalid) goes through msgspec (`EventDecoder`), which gives the contract's dead-letter reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import numba
import numpy as np

from chainsight import jit
from chainsight.contract.events import (
    GPS,
    KIND_OF,
    SENSOR,
    Event,
    EventDecoder,
    Gps,
    Order,
    Scan,
    Sensor,
)
from chainsight.contract.times import now_ms
from chainsight.ingest.idset import hash_spans, hash_strings, span_hash

if TYPE_CHECKING:
    from chainsight.trace.record import EventTexts

NAN = float("nan")
DEVICE_EVENTS = (Gps, Sensor)

# Field numbers of the scanner; a line's fields are a bit mask of them.
FIELDS = ("type", "device_id", "ts", "lat", "lon", "shipment_id", "speed_kmh", "heading_deg",
          "accuracy_m", "event_id", "temp_c", "humidity_pct", "door_open", "battery_pct")
(F_TYPE, F_DEVICE, F_TS, F_LAT, F_LON, F_SHIPMENT, F_SPEED, F_HEADING, F_ACCURACY, F_EVENT,
 F_TEMP, F_HUMIDITY, F_DOOR, F_BATTERY) = range(len(FIELDS))
GPS_FIELDS = sum(1 << f for f in (F_TYPE, F_DEVICE, F_TS, F_LAT, F_LON, F_SHIPMENT, F_SPEED,
                                  F_HEADING, F_ACCURACY, F_EVENT))
GPS_REQUIRED = sum(1 << f for f in (F_TYPE, F_DEVICE, F_TS, F_LAT, F_LON))
SENSOR_FIELDS = sum(1 << f for f in (F_TYPE, F_DEVICE, F_TS, F_SHIPMENT, F_EVENT, F_TEMP,
                                     F_HUMIDITY, F_DOOR, F_BATTERY))
SENSOR_REQUIRED = sum(1 << f for f in (F_TYPE, F_DEVICE, F_TS))
NULLABLE = sum(1 << f for f in (F_SHIPMENT, F_SPEED, F_HEADING, F_ACCURACY, F_EVENT, F_TEMP,
                                F_HUMIDITY, F_DOOR, F_BATTERY))
NAMES = np.frombuffer("".join(FIELDS).encode(), np.uint8)
NAME_ENDS = np.cumsum([len(f) for f in FIELDS])
POW10 = np.array([10.0**k for k in range(23)])  # exact doubles
MAX_DIGITS = 15  # below 2**53: mantissa exact, so one IEEE division rounds correctly
DAYS_BEFORE_MONTH = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])
DAY_MS = 86_400_000
_BUSINESS = msgspec.msgpack.Encoder()
_BUSINESS_EVENTS = msgspec.msgpack.Decoder(list[Scan | Order])


@dataclass
class Extracted:
    """A decoded batch as columns in arrival order, ids still as names (or hashes)."""

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
    has_id: np.ndarray  # whether the row carries an event_id
    id_hash: tuple[np.ndarray, np.ndarray]  # 128-bit hash of the event_id (0, 0 without)
    business: dict[int, Scan | Order]  # row -> scan/order event
    dead_letters: list[dict]
    # the scans' and orders' JSON as a record holds it (keys: rows), when the decoding
    # process made it
    business_json: EventTexts | None = None

    def __getstate__(self) -> dict:
        """Pickled with the business events as MessagePack: several times cheaper both ways
        (batches go from decode processes to the engine's); a column of one value (no
        event_id, no humidity...) as that value."""
        state = {name: _Constant.of(v) if isinstance(v, np.ndarray) else v
                 for name, v in self.__dict__.items()}
        state["id_hash"] = tuple(map(_Constant.of, self.id_hash))
        state["business"] = (list(self.business), _BUSINESS.encode(list(self.business.values())))
        return state

    def __setstate__(self, state: dict) -> None:
        rows, blob = state["business"]
        state["business"] = dict(zip(rows, _BUSINESS_EVENTS.decode(blob), strict=True))
        state["id_hash"] = tuple(_Constant.column(v) for v in state["id_hash"])
        self.__dict__.update({name: _Constant.column(v) for name, v in state.items()})


class _Constant(NamedTuple):
    """A column that holds one value, as pickled: the value's bits."""

    bits: int
    size: int
    dtype: str

    @classmethod
    def of(cls, column: np.ndarray) -> np.ndarray | _Constant:
        """The column, or its value when every row holds the same bits (NaN too)."""
        if column.ndim != 1 or not column.size or column.dtype.itemsize not in (1, 2, 4, 8):
            return column
        bits = column.view(f"u{column.dtype.itemsize}")
        if (bits != bits[0]).any():
            return column
        return cls(int(bits[0]), column.size, column.dtype.str)

    @staticmethod
    def column(value: object) -> object:
        """The column a pickled value stands for (anything else as it is)."""
        if type(value) is _Constant:
            dtype = np.dtype(value.dtype)
            return np.full(value.size, value.bits, f"u{dtype.itemsize}").view(dtype)
        return value


def decode_lines(decoder: EventDecoder, lines: list[bytes], first_line: int = 1,
                 now: int | None = None) -> Extracted:
    """Columns of the valid events among `lines` (line numbers count from `first_line`)."""
    lengths = np.fromiter(map(len, lines), np.int64, len(lines))
    ends = np.cumsum(lengths)
    return decode_buffer(decoder, b"".join(lines), ends - lengths, ends, first_line, now)


def decode_jsonl(decoder: EventDecoder, text: bytes, first_line: int = 1,
                 now: int | None = None) -> tuple[Extracted, int]:
    """Columns of a JSON Lines text, and its number of lines."""
    data = np.frombuffer(text, np.uint8)
    breaks = np.flatnonzero(data == ord("\n"))
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(data)]
    if starts[-1] == len(data):  # the text's final line break ends the last line
        starts, ends = starts[:-1], ends[:-1]
    return decode_buffer(decoder, text, starts, ends, first_line, now), len(starts)


def decode_buffer(decoder: EventDecoder, text: bytes, starts: np.ndarray, ends: np.ndarray,
                  first_line: int, now: int | None) -> Extracted:
    """Columns of the lines text[starts[i]:ends[i]]: flat gps/sensor lines by the scanner, the
    rest by msgspec, merged back into line order."""
    n = len(starts)
    data = np.frombuffer(text, np.uint8)
    horizon = (now_ms() if now is None else now) + decoder.future_tolerance_ms
    c = _Columns(n)
    spans = np.full((n, 6), -1, dtype=np.int64)  # device, shipment and event id byte spans
    fast = scan_kernel(data, starts, ends, decoder.max_payload_bytes, horizon, c.kind, c.ts,
                       c.lat, c.lon, c.accuracy, c.temp_c, c.humidity, c.door, spans)
    slow_rows = np.flatnonzero(~fast)
    lines = [text[s:e] for s, e in zip(starts[slow_rows].tolist(), ends[slow_rows].tolist(),
                                       strict=True)]
    events, numbers, dead = decoder.decode_numbered(
        lines, (slow_rows + first_line).tolist(), now)
    valid = fast.copy()
    slow = np.fromiter(numbers, np.int64, len(numbers)) - first_line
    valid[slow] = True
    c.fill(slow, events)
    fast_rows = np.flatnonzero(fast)
    device_rows = np.flatnonzero(valid & (c.kind <= SENSOR))
    devices = _names(data, spans[:, 0], spans[:, 1], fast_rows, slow, device_rows,
                     [e.device_id if type(e) in DEVICE_EVENTS else None for e in events])
    shipments = _names(data, spans[:, 2], spans[:, 3], fast_rows, slow, np.flatnonzero(valid),
                       [e.shipment_id for e in events])
    has_id, (h1, h2) = _id_hashes(data, spans[:, 4], spans[:, 5], slow, events)
    keep = np.flatnonzero(valid)
    row_of = np.cumsum(valid) - 1  # line -> row among the valid lines
    business = {int(row_of[i]): e for i, e in zip(slow.tolist(), events, strict=True)
                if type(e) in (Scan, Order)}
    return Extracted(c.kind[keep], c.ts[keep], c.lat[keep], c.lon[keep], c.temp_c[keep],
                     c.humidity[keep], c.door[keep], c.accuracy[keep], devices, shipments,
                     has_id[keep], (h1[keep], h2[keep]), business, dead)


def _id_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, slow_rows: np.ndarray,
               events: list[Event]) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Whether each line has an event_id, and the id's 128-bit hash ((0, 0) without one):
    hashed from the bytes for fast lines, from the decoded string for slow ones."""
    has_id = starts >= 0
    h1, h2 = hash_spans(data, starts, ends)
    ids = [(i, e.event_id) for i, e in zip(slow_rows.tolist(), events, strict=True)
           if e.event_id is not None]
    if ids:
        at = np.array([i for i, _ in ids], dtype=np.int64)
        h1[at], h2[at] = hash_strings([event_id for _, event_id in ids])
        has_id[at] = True
    h1[~has_id] = h2[~has_id] = 0
    return has_id, (h1, h2)


class _Columns:
    """Per-line output columns, filled by the scanner and then by the slow path."""

    def __init__(self, n: int) -> None:
        self.kind = np.zeros(n, dtype=np.int8)
        self.ts = np.zeros(n, dtype=np.int64)
        self.lat, self.lon, self.accuracy, self.temp_c, self.humidity = (
            np.full(n, NAN) for _ in range(5))
        self.door = np.full(n, -1, dtype=np.int8)

    def fill(self, at: np.ndarray, events: list[Event]) -> None:
        """Put msgspec-decoded events at lines `at`."""
        if not events:
            return
        self.kind[at] = [KIND_OF[type(e)] for e in events]
        self.ts[at] = [e.ts for e in events]
        for i, e in zip(at.tolist(), events, strict=True):
            if type(e) is Gps:
                self.lat[i], self.lon[i] = e.lat, e.lon
                self.accuracy[i] = _number(e.accuracy_m)
            elif type(e) is Sensor:
                self.temp_c[i], self.humidity[i] = _number(e.temp_c), _number(e.humidity_pct)
                self.door[i] = -1 if e.door_open is None else int(e.door_open)
            elif type(e) is Scan and e.lat is not None and e.lon is not None:
                self.lat[i], self.lon[i] = e.lat, e.lon


def _number(value: float | None) -> float:
    return NAN if value is None else value


def _names(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, fast_rows: np.ndarray,
           slow_rows: np.ndarray, rows: np.ndarray,
           slow_names: list[str | None]) -> tuple[list, np.ndarray]:
    """Factorize one id column over `rows` (ascending lines): the distinct names (None for
    rows without one) in order of first appearance, and each row's position among them. Fast
    rows' names are byte spans; slow rows' names are strings."""
    code_of_line = np.full(len(starts), -1, dtype=np.int64)
    span_rows = fast_rows[starts[fast_rows] >= 0]
    codes, firsts, text, offset = factorize_spans(data, starts, ends, span_rows)
    code_of_line[span_rows] = codes
    text, offset = text.tobytes().decode("ascii"), offset.tolist()  # plain ASCII: chars
    index = {text[a:b]: i for i, (a, b) in enumerate(zip(offset[:-1], offset[1:], strict=True))}
    first_line = firsts.tolist()
    for i, name in zip(slow_rows.tolist(), slow_names, strict=True):
        if name is not None:
            code_of_line[i] = code = index.setdefault(name, len(index))
            if code == len(first_line):
                first_line.append(i)
            elif i < first_line[code]:
                first_line[code] = i
    none = rows[code_of_line[rows] < 0]
    if len(none):
        code_of_line[none] = index.setdefault(None, len(index))  # type: ignore[arg-type]
        first_line.append(int(none[0]))
    order = np.argsort(first_line, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    names = list(index)
    return [names[i] for i in order.tolist()], rank[code_of_line[rows]].astype(np.int32)


@numba.njit(cache=True)
def factorize_spans(data: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's span as a code, numbering distinct byte strings in first-seen order; the
    first row of each code; the distinct strings one after another, and where each starts
    there (and where the last ends). The table and a copy of each distinct string grow with the
    distinct strings (a few thousand ids in a batch of 100,000s of rows), so lookups stay in
    cache."""
    capacity = 1024
    table = np.full(capacity, -1, dtype=np.int64)  # slot -> code
    codes = np.empty(len(rows), dtype=np.int64)
    firsts = np.empty(len(rows), dtype=np.int64)
    hashes = np.empty(len(rows), dtype=np.int64)  # code -> hash
    offset = np.zeros(len(rows) + 1, dtype=np.int64)  # code -> its bytes in `copies`
    copies = np.empty(4096, dtype=np.uint8)
    n_codes = 0
    for j in range(len(rows)):
        r = rows[j]
        a, a_end = starts[r], ends[r]
        h, _ = span_hash(data, a, a_end)
        slot = h & (capacity - 1)
        while True:
            c = table[slot]
            if c < 0:
                break
            if hashes[c] == h and _same(data, a, a_end, copies, offset[c], offset[c + 1]):
                break
            slot = (slot + 1) & (capacity - 1)
        if c >= 0:
            codes[j] = c
            continue
        table[slot] = codes[j] = n_codes
        firsts[n_codes], hashes[n_codes] = r, h
        used = offset[n_codes]
        while used + a_end - a > len(copies):
            grown = np.empty(2 * len(copies), dtype=np.uint8)
            grown[:used] = copies[:used]
            copies = grown
        copies[used:used + a_end - a] = data[a:a_end]
        offset[n_codes + 1] = used + a_end - a
        n_codes += 1
        if 2 * n_codes > capacity:
            capacity *= 2
            table = np.full(capacity, -1, dtype=np.int64)
            for c in range(n_codes):
                slot = hashes[c] & (capacity - 1)
                while table[slot] >= 0:
                    slot = (slot + 1) & (capacity - 1)
                table[slot] = c
    return codes, firsts[:n_codes], copies[:offset[n_codes]], offset[:n_codes + 1]


@jit.helper
def _same(data: np.ndarray, a: int, a_end: int, other: np.ndarray, b: int, b_end: int) -> bool:
    """Whether data[a:a_end] and other[b:b_end] hold the same bytes."""
    if a_end - a != b_end - b:
        return False
    for k in range(a_end - a):
        if data[a + k] != other[b + k]:
            return False
    return True


@jit.helper
def _skip_ws(data: np.ndarray, p: int, end: int) -> int:
    while p < end and (data[p] == 32 or data[p] == 9 or data[p] == 13 or data[p] == 10):
        p += 1
    return p


@jit.helper
def _string_end(data: np.ndarray, p: int, end: int) -> int:
    """Position of the closing quote of a plain ASCII string starting after `p`, or -1 for
    anything the scanner leaves to msgspec (escapes, control or non-ASCII bytes)."""
    while p < end:
        b = data[p]
        if b == 34:
            return p
        if b == 92 or b < 32 or b > 126:
            return -1
        p += 1
    return -1


@jit.helper
def _field(data: np.ndarray, p: int, q: int) -> int:
    """The field number of the key data[p:q], or -1."""
    start = 0
    for f in range(len(NAME_ENDS)):
        end = NAME_ENDS[f]
        if end - start == q - p:
            k = 0
            while k < q - p and data[p + k] == NAMES[start + k]:
                k += 1
            if k == q - p:
                return f
        start = end
    return -1


@jit.helper
def _number_at(data: np.ndarray, p: int, end: int) -> tuple[int, float, bool]:
    """Parse a JSON number at `p`: (end position or -1, value, whether it had a fraction)."""
    neg = p < end and data[p] == 45
    if neg:
        p += 1
    if p >= end or data[p] < 48 or data[p] > 57:
        return -1, 0.0, False
    if data[p] == 48 and p + 1 < end and 48 <= data[p + 1] <= 57:
        return -1, 0.0, False  # a leading zero
    mantissa, digits, fraction = 0, 0, -1
    while p < end:
        b = data[p]
        if 48 <= b <= 57:
            mantissa = mantissa * 10 + (b - 48)
            if mantissa > 0 or fraction >= 0:
                digits += 1
            if fraction >= 0:
                fraction += 1
        elif b == 46 and fraction < 0:
            fraction = 0
        else:
            break
        p += 1
    if fraction == 0 or digits > MAX_DIGITS or (p < end and (data[p] == 101 or data[p] == 69)):
        return -1, 0.0, False  # "1." or too many digits or an exponent: msgspec decides
    value = mantissa / POW10[max(fraction, 0)]
    if neg and (fraction > 0 or mantissa != 0):
        value = -value
    return p, value, fraction > 0


@jit.helper
def _digits(data: np.ndarray, p: int, n: int) -> int:
    value = 0
    for k in range(n):
        b = data[p + k]
        if b < 48 or b > 57:
            return -1
        value = value * 10 + (b - 48)
    return value


@jit.helper
def _days_from_civil(y: int, m: int, d: int) -> int:
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@jit.helper
def _rfc3339_ms(data: np.ndarray, p: int, q: int) -> tuple[bool, int]:
    """Epoch ms of `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)` in data[p:q], floored like
    `(datetime - EPOCH) // 1 ms`; (False, 0) for any other text."""
    if q - p < 20 or data[p + 4] != 45 or data[p + 7] != 45 or data[p + 10] != 84 \
            or data[p + 13] != 58 or data[p + 16] != 58:
        return False, 0
    y, mo, d = _digits(data, p, 4), _digits(data, p + 5, 2), _digits(data, p + 8, 2)
    h, mi, s = _digits(data, p + 11, 2), _digits(data, p + 14, 2), _digits(data, p + 17, 2)
    if y < 1 or mo < 1 or mo > 12 or d < 1 or h < 0 or h > 23 or mi < 0 or mi > 59 \
            or s < 0 or s > 59:
        return False, 0
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    month_days = (DAYS_BEFORE_MONTH[mo] if mo < 12 else 365) - DAYS_BEFORE_MONTH[mo - 1]
    if d > month_days + (1 if mo == 2 and leap else 0):
        return False, 0
    r = p + 19
    micros = 0
    if data[r] == 46:
        r += 1
        n = 0
        while r < q and 48 <= data[r] <= 57:
            micros = micros * 10 + (data[r] - 48)
            n += 1
            r += 1
        if n < 1 or n > 6:
            return False, 0
        micros *= 10 ** (6 - n)
    offset_ms = 0
    if r == q - 1 and data[r] == 90:
        pass
    elif r == q - 6 and (data[r] == 43 or data[r] == 45) and data[r + 3] == 58:
        oh, om = _digits(data, r + 1, 2), _digits(data, r + 4, 2)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return False, 0
        offset_ms = (oh * 60 + om) * 60_000 * (1 if data[r] == 43 else -1)
    else:
        return False, 0
    ms = (_days_from_civil(y, mo, d) * DAY_MS + ((h * 60 + mi) * 60 + s) * 1000
          + micros // 1000 - offset_ms)
    return True, ms


@jit.helper
def _scan_line(data: np.ndarray, p: int, end: int, horizon: int, kind: np.ndarray,
               ts: np.ndarray, lat: np.ndarray, lon: np.ndarray, accuracy: np.ndarray,
               temp: np.ndarray, humidity: np.ndarray, door: np.ndarray, spans: np.ndarray,
               i: int) -> bool:
    """Decode one flat gps/sensor line into row `i`; False leaves the line to msgspec."""
    p = _skip_ws(data, p, end)
    if p >= end or data[p] != 123:
        return False
    seen, nulls, line_kind = 0, 0, -1
    while True:
        p = _skip_ws(data, p + 1, end)
        if p >= end or data[p] != 34:
            return False
        q = _string_end(data, p + 1, end)
        if q < 0:
            return False
        f = _field(data, p + 1, q)
        if f < 0 or seen & (1 << f):
            return False  # an unknown or repeated field
        seen |= 1 << f
        p = _skip_ws(data, q + 1, end)
        if p >= end or data[p] != 58:
            return False
        p = _skip_ws(data, p + 1, end)
        if p >= end:
            return False
        b = data[p]
        if b == 110:  # null
            if p + 4 > end or data[p + 1] != 117 or data[p + 2] != 108 or data[p + 3] != 108 \
                    or not NULLABLE & (1 << f):
                return False
            nulls |= 1 << f
            p += 4
        elif f == F_DOOR:
            if p + 4 <= end and b == 116 and data[p + 1] == 114 and data[p + 2] == 117 \
                    and data[p + 3] == 101:
                door[i] = 1
                p += 4
            elif p + 5 <= end and b == 102 and data[p + 1] == 97 and data[p + 2] == 108 \
                    and data[p + 3] == 115 and data[p + 4] == 101:
                door[i] = 0
                p += 5
            else:
                return False
        elif f == F_TYPE or f == F_DEVICE or f == F_SHIPMENT or f == F_EVENT or (
                f == F_TS and b == 34):
            if b != 34:
                return False
            q = _string_end(data, p + 1, end)
            if q < 0:
                return False
            if f == F_TYPE:
                if q - p == 4 and data[p + 1] == 103 and data[p + 2] == 112 \
                        and data[p + 3] == 115:
                    line_kind = GPS
                elif q - p == 7 and data[p + 1] == 115 and data[p + 2] == 101 \
                        and data[p + 3] == 110 and data[p + 4] == 115 and data[p + 5] == 111 \
                        and data[p + 6] == 114:
                    line_kind = SENSOR
                else:
                    return False  # scan, order or an unknown type
            elif f == F_TS:
                good, ms = _rfc3339_ms(data, p + 1, q)
                if not good:
                    return False
                ts[i] = ms
            else:
                if q == p + 1 and f != F_EVENT:
                    return False  # an empty id
                col = 0 if f == F_DEVICE else 2 if f == F_SHIPMENT else 4
                spans[i, col], spans[i, col + 1] = p + 1, q
            p = q + 1
        else:  # a number
            q, value, fraction = _number_at(data, p, end)
            if q < 0:
                return False
            if f == F_TS:
                if fraction or q - p > 18:
                    return False
                ts[i] = int(value)
            elif f == F_LAT:
                if value < -90 or value > 90:
                    return False
                lat[i] = value
            elif f == F_LON:
                if value < -180 or value > 180:
                    return False
                lon[i] = value
            elif f == F_ACCURACY:
                accuracy[i] = value
            elif f == F_TEMP:
                temp[i] = value
            elif f == F_HUMIDITY:
                humidity[i] = value
            p = q
        p = _skip_ws(data, p, end)
        if p >= end:
            return False
        if data[p] == 125:
            break
        if data[p] != 44:
            return False
    if _skip_ws(data, p + 1, end) != end or ts[i] > horizon or ts[i] < 0:
        return False  # trailing text, or a time msgspec's checks reject
    values = seen & ~nulls
    if line_kind == GPS:
        ok = seen & ~GPS_FIELDS == 0 and values & GPS_REQUIRED == GPS_REQUIRED
    elif line_kind == SENSOR:
        ok = (seen & ~SENSOR_FIELDS == 0 and values & SENSOR_REQUIRED == SENSOR_REQUIRED
              and values & ((1 << F_TEMP) | (1 << F_HUMIDITY)) != 0)
    else:
        ok = False
    kind[i] = line_kind
    return ok


@numba.njit(cache=True)
def scan_kernel(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_bytes: int,
                horizon: int, kind: np.ndarray, ts: np.ndarray, lat: np.ndarray,
                lon: np.ndarray, accuracy: np.ndarray, temp: np.ndarray, humidity: np.ndarray,
                door: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Scan every line; True where the line was decoded here, False where msgspec must. A line
    left to msgspec gets its columns reset, so nothing half-scanned remains."""
    fast = np.zeros(len(starts), dtype=np.bool_)
    for i in range(len(starts)):
        if ends[i] - starts[i] <= max_bytes and _scan_line(
                data, starts[i], ends[i], horizon, kind, ts, lat, lon, accuracy, temp, humidity,
                door, spans, i):
            fast[i] = True
        else:
            kind[i], ts[i], door[i] = 0, 0, -1
            lat[i] = lon[i] = accuracy[i] = temp[i] = humidity[i] = np.nan
            spans[i, :] = -1
    return fast
