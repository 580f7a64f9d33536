"""Each shipment's tamper-evident record: a hash chain (`chainsight.trace.chain`) of every
accepted event of the shipment and every settled alert transition, users' actions included.

Entries (all with `shipment_id`, `seq`, `prev`, `recorded_at`, and `hash` once written):
- `{"entry": "readings", "device_id", "ts", "type", "lat", "lon", "temp_c", "humidity_pct",
  "door_open"}`: one device's GPS fixes and sensor readings of one batch, in arrival order, as
  columns (`type` 0 = gps, 1 = sensor; a value a reading lacks is null, `door_open` -1);
- `{"entry": "business", "events"}`: the shipment's scans and orders of one batch, in arrival
  order, their contract fields as decoded;
- `{"entry": "alert", "alert"}`: a settled alert record (`details.user` on users' actions).
Unknown extra fields of events are not part of the record. The engine keeps each chain's length
and head; the entries go out in `Output.record` as `Written`, the line a store keeps: the entry's
canonical JSON with `"hash"` added last (so reading it back and dropping `hash` gives the hashed
bytes again).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec
import numpy as np

from chainsight.contract.events import GPS, SENSOR, Order, Scan
from chainsight.contract.times import iso
from chainsight.engine.state import State
from chainsight.ingest.rows import Rows
from chainsight.trace.chain import GENESIS, canonical, digest, first_broken


class Written(NamedTuple):
    """An entry as made: its shipment, position and hash, and the JSON line to keep."""

    shipment_id: str
    seq: int
    hash: str
    line: bytes


def _nullable(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`values` where `keep`, NaN (written as null) elsewhere."""
    return np.where(keep, values, np.nan)


class Recorder:
    """Appends to the shipments' chains; knows each chain's length and head hash."""

    def __init__(self) -> None:
        self.length: list[int] = []  # by shipment code
        self.heads: list[str] = []

    def head(self, shipment: int) -> tuple[int, str]:
        """(entries so far, hash of the newest) of a shipment's chain."""
        if shipment >= len(self.length):
            return 0, GENESIS
        return self.length[shipment], self.heads[shipment]

    def _append(self, shipment: int, name: str, entry: dict, recorded_at: str,
                out: list[Written]) -> None:
        missing = shipment + 1 - len(self.length)
        if missing > 0:
            self.length += [0] * missing
            self.heads += [GENESIS] * missing
        seq, prev = self.length[shipment], self.heads[shipment]
        entry.update(shipment_id=name, seq=seq, prev=prev, recorded_at=recorded_at)
        body = canonical(entry)
        hashed = digest(prev, body)
        self.length[shipment] += 1
        self.heads[shipment] = hashed
        out.append(Written(name, seq, hashed, b'%b,"hash":"%b"}' % (body[:-1],
                                                                      hashed.encode())))

    def events(self, rows: Rows, shipment: np.ndarray, business: dict[int, Scan | Order],
               state: State, now: int) -> list[Written]:
        """Entries for accepted rows (arrival order) whose shipment (per row, -1: none) is
        known: a `readings` entry per shipment and device, a `business` entry per shipment."""
        out: list[Written] = []
        recorded_at = iso(now)
        names, devices = state.shipments.names, state.devices.names
        keep = np.flatnonzero(shipment >= 0)
        if not len(keep):
            return out
        order = keep[np.lexsort((rows.device[keep], shipment[keep]))]
        sh, dev, kind = shipment[order], rows.device[order], rows.kind[order]
        gps, sensor = kind == GPS, kind == SENSOR
        columns = {"ts": rows.ts[order], "type": (kind == SENSOR).astype(np.int8),
                   "lat": _nullable(rows.lat[order], gps), "lon": _nullable(rows.lon[order], gps),
                   "temp_c": _nullable(rows.temp_c[order], sensor),
                   "humidity_pct": _nullable(rows.humidity[order], sensor),
                   "door_open": np.where(sensor, rows.door[order], -1).astype(np.int8)}
        readings = gps | sensor
        starts = np.flatnonzero(np.diff(sh, prepend=-1) | np.diff(dev, prepend=-1))
        ends = np.append(starts[1:], len(order))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            s = int(sh[a])
            if readings[a]:  # a group is one device's readings, or the business events
                entry: dict = {"entry": "readings", "device_id": devices[int(dev[a])]}
                entry.update((name, column[a:b]) for name, column in columns.items())
            else:
                entry = {"entry": "business", "events": msgspec.to_builtins(
                    [business[seq] for seq in rows.seq[order[a:b]].tolist()])}
            self._append(s, names[s], entry, recorded_at, out)
        return out

    def alerts(self, records: list[dict], state: State, now: int) -> list[Written]:
        """Entries for settled alert records."""
        out: list[Written] = []
        index, recorded_at = state.shipments.index, iso(now)
        for record in records:
            s = index.get(record.get("shipment_id"))
            if s is not None:
                self._append(s, record["shipment_id"], {"entry": "alert", "alert": record},
                             recorded_at, out)
        return out

    def dump_state(self) -> dict:
        return {"length": self.length, "heads": self.heads}

    def load_state(self, data: dict) -> None:
        if len(data["length"]) != len(data["heads"]):
            raise ValueError("record lengths and heads differ in number")
        self.length, self.heads = list(data["length"]), list(data["heads"])




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
