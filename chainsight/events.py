"""The input event model of the wire contract (`shared/contracts/events.md`), decoded with msgspec.

`EventDecoder.decode` turns one JSON line into a typed event whose `ts` is normalised to epoch
milliseconds, or raises `InvalidEvent` with a one-line reason for the dead-letter output.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
import numpy as np

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

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
    event_id: str | None = None


Event = Gps | Sensor | Scan | Order
KIND_OF = {Gps: GPS, Sensor: SENSOR, Scan: SCAN, Order: ORDER}


class InvalidEvent(ValueError):
    """An input that goes to the dead-letter output; the message is the one-line reason."""


def to_ms(ts: int | datetime) -> int:
    """Epoch milliseconds of either contract timestamp form."""
    return ts if type(ts) is int else (ts - EPOCH) // _MS


def iso(ms: int) -> str:
    """ISO-8601 UTC with a `Z`, milliseconds only when there are any."""
    seconds, millis = divmod(int(ms), 1000)
    text = (EPOCH + timedelta(seconds=seconds)).isoformat()[:19]
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def iso_many(ms: np.ndarray) -> list[str]:
    """`iso` of many epoch-ms times at once."""
    text = np.datetime_as_string(np.asarray(ms, dtype="datetime64[ms]"), unit="ms").tolist()
    return [t[:-4] + "Z" if t.endswith(".000") else t + "Z" for t in text]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class EventDecoder:
    """Decodes and validates JSON lines against the contract."""

    def __init__(self, max_payload_bytes: int = 65536, future_tolerance_ms: int = 86_400_000):
        self._decode = msgspec.json.Decoder(Event).decode
        self.max_payload_bytes = max_payload_bytes
        self.future_tolerance_ms = future_tolerance_ms

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
            try:
                events.append(decode(line))
            except msgspec.ValidationError as exc:
                dead.append(_dead(f"invalid event: {exc}", line, n))
                continue
            except msgspec.DecodeError as exc:
                if line.strip():
                    dead.append(_dead(f"malformed JSON: {exc}", line, n))
                continue
            kept.append(n)
            payloads.append(line)
        return self._check(events, kept, payloads, dead, now)

    def _check(self, events: list[Event], numbers: list[int], payloads: list[bytes],
               dead: list[dict], now: int | None) -> tuple[list[Event], list[int], list[dict]]:
        """Normalise timestamps and apply the checks a schema cannot express."""
        ms = [t if type(t) is int else (t - EPOCH) // _MS for t in (e.ts for e in events)]
        for e, t in zip(events, ms, strict=True):
            e.ts = t
        horizon = (now_ms() if now is None else now) + self.future_tolerance_ms
        bad: dict[int, str] = {}
        if ms and max(ms) > horizon:
            bad.update((i, f"ts {iso(t)} is more than 24 h in the future")
                       for i, t in enumerate(ms) if t > horizon)
        bad.update((i, "sensor event has no reading: temp_c or humidity_pct is required")
                   for i, e in enumerate(events)
                   if type(e) is Sensor and e.temp_c is None and e.humidity_pct is None)
        for e in events:
            if type(e) is Order and e.promised_by is not None:
                e.promised_by = to_ms(e.promised_by)
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


def _dead(reason: str, line: bytes, n: int) -> dict:
    return {"reason": reason, "payload": line.decode("utf-8", errors="replace").rstrip("\r\n"),
            "line": n}
