"""The input event model of the wire contract (`shared/contracts/events.md`), decoded with msgspec.

`EventDecoder.decode` turns one JSON line into a typed event whose `ts` is normalised to epoch
milliseconds, or raises `InvalidEvent` with a one-line reason for the dead-letter output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from chainsight.contract.times import MAX_MS, now_ms, to_ms

if TYPE_CHECKING:
    from chainsight.config import Settings

MAX_DEPTH = 64  # in lines too deep for msgspec, deeper members are dropped (the contract needs 4)

Ts = int | Annotated[datetime, msgspec.Meta(tz=True)]
Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Id = Annotated[str, msgspec.Meta(min_length=1)]

GPS, SENSOR, SCAN, ORDER = 0, 1, 2, 3
SCAN_STEPS = ("received", "put_away", "picked", "packed", "loaded", "unloaded", "delivered")
ORDER_STATUSES = ("created", "allocated", "shipped", "in_transit", "delivered", "cancelled")


class Point(msgspec.Struct, gc=False):
    lat: Lat
    lon: Lon


class Certificate(msgspec.Struct, gc=False):
    kind: str
    issuer: str
    id: str


class Lot(msgspec.Struct):
    lot_id: Id
    certificates: list[Certificate] = []


class Gps(msgspec.Struct, tag_field="type", tag="gps", gc=False):
    device_id: Id
    ts: Ts
    lat: Lat
    lon: Lon
    shipment_id: Id | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None
    event_id: str | None = None


class Sensor(msgspec.Struct, tag_field="type", tag="sensor", gc=False):
    device_id: Id
    ts: Ts
    temp_c: float | None = None
    humidity_pct: float | None = None
    shipment_id: Id | None = None
    door_open: bool | None = None
    battery_pct: float | None = None
    event_id: str | None = None


class Scan(msgspec.Struct, tag_field="type", tag="scan", gc=False):
    shipment_id: Id
    ts: Ts
    site_id: Id
    step: Literal[SCAN_STEPS]  # type: ignore[valid-type]
    reader_id: str | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    event_id: str | None = None


class Order(msgspec.Struct, tag_field="type", tag="order"):
    order_id: Id
    shipment_id: Id
    ts: Ts
    status: Literal[ORDER_STATUSES]  # type: ignore[valid-type]
    customer_id: str | None = None
    product_profile: str | None = None
    promised_by: Ts | None = None
    origin: Point | None = None
    destination: Point | None = None
    weight_kg: Annotated[float, msgspec.Meta(ge=0)] | None = None
    mode: Literal["road", "rail", "sea", "air"] | None = None
    lot: Lot | None = None
    device_ids: list[Id] | None = None
    corridor_id: Id | None = None  # extension: the corridor fence the shipment should keep to
    sscc: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{18}$")] | None = None
    gtin: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{14}$")] | None = None
    event_id: str | None = None


Event = Gps | Sensor | Scan | Order
KIND_OF = {Gps: GPS, Sensor: SENSOR, Scan: SCAN, Order: ORDER}
CONTRACT_FIELDS = frozenset({"type"}.union(*(k.__struct_fields__ for k in KIND_OF)))


class InvalidEvent(ValueError):
    """An input that goes to the dead-letter output; the message is the one-line reason."""


class EventDecoder:
    """Decodes and validates JSON lines against the contract."""

    def __init__(self, max_payload_bytes: int = 65536, future_tolerance_ms: int = 86_400_000):
        self._decode = msgspec.json.Decoder(Event).decode
        self.max_payload_bytes = max_payload_bytes
        self.future_tolerance_ms = future_tolerance_ms

    @classmethod
    def for_settings(cls, settings: Settings) -> EventDecoder:
        """The decoder the settings describe (payload limit, how far in the future)."""
        return cls(settings.max_payload_bytes, int(settings.future_tolerance_h * 3_600_000))

    def __getstate__(self) -> dict:  # msgspec decoders do not pickle: rebuild on load
        return {"max_payload_bytes": self.max_payload_bytes,
                "future_tolerance_ms": self.future_tolerance_ms}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def decode_many(self, lines: list[bytes], first_line: int = 1,
                    now: int | None = None) -> tuple[list[Event], list[dict]]:
        """Valid events, with `ts` and `promised_by` in epoch ms, and dead letters
        `{"reason", "payload", "line"}` for the rest; blank lines are skipped."""
        events, _, dead = self.decode_numbered(
            lines, range(first_line, first_line + len(lines)), now)
        return events, dead

    def decode_numbered(self, lines: list[bytes], numbers: Iterable[int],
                        now: int | None = None) -> tuple[list[Event], list[int], list[dict]]:
        """`decode_many` for lines with the given line numbers; also returns the numbers of
        the valid events' lines."""
        events: list[Event] = []
        kept: list[int] = []
        payloads: list[bytes] = []
        dead: list[dict] = []
        decode = self._decode
        for n, line in zip(numbers, lines, strict=True):
            if len(line) > self.max_payload_bytes:
                dead.append(_dead(f"payload of {len(line)} bytes exceeds "
                                  f"{self.max_payload_bytes}", line, n))
                continue
            if not line.isascii() and (reason := _utf8_error(line)):
                dead.append(_dead(reason, line, n))
                continue
            try:
                event = decode(line)
            except RecursionError:
                event = self._decode_deep(line)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                event = _reason(exc, line)
            if isinstance(event, str):
                if line.strip(JSON_SPACE):
                    dead.append(_dead(event, line, n))
                continue
            events.append(event)
            kept.append(n)
            payloads.append(line)
        return self._check(events, kept, payloads, dead, now)

    def _decode_deep(self, line: bytes) -> Event | str:
        """Rare path for a line nested too deeply for msgspec: decoded without its unknown
        members nested deeper than MAX_DEPTH, or the reason it cannot be."""
        shallow = _without_deep_members(line)
        if isinstance(shallow, str):
            return shallow
        try:
            return self._decode(shallow)
        except RecursionError:  # only when called with a deep stack already
            return f"JSON nested deeper than {MAX_DEPTH} levels"
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _reason(exc, shallow)

    def _check(self, events: list[Event], numbers: list[int], payloads: list[bytes],
               dead: list[dict], now: int | None) -> tuple[list[Event], list[int], list[dict]]:
        """Normalise timestamps and apply the checks a schema cannot express."""
        sent = [e.ts for e in events]
        ms = [to_ms(t) for t in sent]
        for e, t in zip(events, ms, strict=True):
            e.ts = t
        horizon = (now_ms() if now is None else now) + self.future_tolerance_ms
        bad: dict[int, str] = {}
        if ms and (max(ms) > horizon or min(ms) < 0):
            late = f"is more than {self.future_tolerance_ms / 3_600_000:g} h in the future"
            bad.update((i, _time_error("ts", sent[i], t, late))
                       for i, t in enumerate(ms) if t > horizon or t < 0)
        bad.update((i, "sensor event has no reading: temp_c or humidity_pct is required")
                   for i, e in enumerate(events)
                   if type(e) is Sensor and e.temp_c is None and e.humidity_pct is None)
        for i, e in enumerate(events):
            if type(e) is Order and e.promised_by is not None:
                promised = e.promised_by
                e.promised_by = t = to_ms(promised)
                if not 0 <= t <= MAX_MS:
                    bad.setdefault(i, _time_error("promised_by", promised, t,
                                                      "is after 9999-12-31"))
        if bad:
            for i, reason in bad.items():
                dead.append(_dead(reason, payloads[i], numbers[i]))
            dead.sort(key=lambda d: d["line"])
            events = [e for i, e in enumerate(events) if i not in bad]
            numbers = [n for i, n in enumerate(numbers) if i not in bad]
        return events, numbers, dead

    def decode(self, line: bytes, now: int | None = None) -> Event:
        """One validated event; raises InvalidEvent with the dead-letter reason."""
        events, dead = self.decode_many([line], now=now)
        if dead:
            raise InvalidEvent(dead[0]["reason"])
        if not events:
            raise InvalidEvent("empty line")
        return events[0]


JSON_SPACE = b" \t\r\n"
_UTF8_ERROR = "malformed JSON: invalid UTF-8 at byte {}"
_NON_NUMBER = re.compile(rb"-?(NaN|Infinity)")
_KEY_BEFORE = re.compile(rb'"((?:[^"\\]|\\.)*)"[ \t\r\n]*:[ \t\r\n]*$')
_AT_BYTE = re.compile(r"\(byte (\d+)\)")
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[][{}:,"]', re.DOTALL)


def _utf8_error(line: bytes) -> str | None:
    """The contract's reason for a line that is not valid UTF-8 (msgspec does not check the
    strings of unknown fields)."""
    try:
        line.decode()
    except UnicodeDecodeError as exc:
        return _UTF8_ERROR.format(exc.start)
    return None


def _reason(exc: msgspec.ValidationError | msgspec.DecodeError, line: bytes) -> str:
    """The dead-letter reason for a msgspec error, naming NaN/Infinity and its field."""
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid event: {exc}"
    at = _AT_BYTE.search(str(exc))
    if at and (token := _NON_NUMBER.match(line, max(int(at[1]) - 1, 0)) or _NON_NUMBER.match(
            line, int(at[1]))):
        key = _KEY_BEFORE.search(line, max(token.start() - 256, 0), token.start())
        where = f" (field {key[1].decode(errors='replace')})" if key else ""
        return f"malformed JSON: {token[0].decode()} is not allowed{where}"
    return f"malformed JSON: {exc}"


def _without_deep_members(line: bytes) -> bytes | str:
    """`line` with its top-level members nested deeper than MAX_DEPTH replaced by null, or the
    reason for rejecting it when such a member is a contract field. Plain Python: only lines
    msgspec found too deeply nested come here."""
    depth = deepest = 0
    key, start = b"", -1  # the current top-level member's key, and where its value starts
    members: list[tuple[bytes, int, int, int]] = []  # key, value start and end, depth reached
    for token in _TOKEN.finditer(line):
        t = token[0]
        if t == b'"':
            break  # an unterminated string: msgspec reports it
        if t in (b"{", b"["):
            depth += 1
            deepest = max(deepest, depth)
        elif t in (b"}", b"]") or (t == b"," and depth == 1):
            if depth == 1 and start >= 0:
                members.append((key, start, token.start(), deepest))
                start = -1
            if t != b",":
                depth -= 1
                if depth <= 0:
                    break
        elif depth == 1 and t == b":":
            start, deepest = token.end(), 1
        elif depth == 1 and t[0] == ord('"'):
            key = t
    if start >= 0:
        members.append((key, start, len(line), deepest))
    deep = [m for m in members if m[3] > MAX_DEPTH]
    for key, *_ in deep:
        if (name := _key(key)) in CONTRACT_FIELDS:
            return f"JSON nested deeper than {MAX_DEPTH} levels in field {name}"
    for _, begin, end, _ in reversed(deep):
        line = line[:begin] + b"null" + line[end:]
    return line


def _time_error(name: str, sent: int | datetime, ms: int, late: str) -> str:
    """Why a time before 1970 or after the latest allowed is rejected, quoting it as sent."""
    shown = sent if type(sent) is int else sent.isoformat()
    if not -(2**63) <= ms < 2**63:
        return f"{name} {shown} is out of range"
    if ms < 0:
        return f"{name} {shown} is before 1970-01-01" + (
            " (device clock not set?)" if name == "ts" else "")
    return f"{name} {shown} {late}"


def _key(token: bytes) -> str:
    try:
        return msgspec.json.decode(token, type=str)
    except msgspec.DecodeError:
        return token.decode(errors="replace")


def _dead(reason: str, line: bytes, n: int) -> dict:
    return {"reason": " ".join(reason.splitlines()),
            "payload": line.decode("utf-8", errors="replace").rstrip("\r\n"), "line": n}
