"""Lines to rows: decode (see `columnar`), intern ids as dense ints, drop duplicates.

Duplicates are recognised by `event_id`, or, for events without one, by the derived id
(type, device or shipment, ts); ids are remembered as 128-bit hashes (`idset`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from chainsight.contract.events import SENSOR, EventDecoder, Order, Scan
from chainsight.engine.state import State
from chainsight.ingest.columnar import Extracted, decode_lines
from chainsight.ingest.idset import IdWindow
from chainsight.ingest.rows import Rows

if TYPE_CHECKING:
    from chainsight.trace.record import EventTexts

DERIVED = 1 << 62  # marks the hash of a derived id: (key, kind) | DERIVED, ts


@dataclass
class Decoded:
    rows: Rows
    business: dict[int, Scan | Order]  # seq -> the scan/order event of that row
    dead_letters: list[dict]
    valid: int
    duplicates: int
    business_json: EventTexts | None  # keys: seq; as `Extracted.business_json`


class Ingest:
    """Decodes raw lines into columnar rows, interning ids into `state` and dropping duplicates.

    Duplicates are recognised by `event_id`, or, for events without one, by the derived id
    (type, device or shipment, ts); ids are remembered as 128-bit hashes for one to two
    dedup windows of event time.
    """

    def __init__(self, state: State, decoder: EventDecoder, dedup: IdWindow) -> None:
        self.state = state
        self.decoder = decoder
        self.dedup = dedup
        self.seq = 0

    def dump_state(self) -> dict:
        return {"seq": self.seq, "dedup": self.dedup.dump_state()}

    def load_state(self, data: dict) -> None:
        self.seq = data["seq"]
        self.dedup.load_state(data["dedup"])

    def decode(self, lines: Iterable[bytes], first_line: int = 1,
               now: int | None = None) -> Decoded:
        lines = lines if isinstance(lines, list) else list(lines)
        return self.columns(decode_lines(self.decoder, lines, first_line, now))

    def columns(self, x: Extracted) -> Decoded:
        """Rows with dense ids and arrival sequence numbers, duplicates removed."""
        n = len(x.ts)
        st = self.state
        first = self.seq
        seq = np.arange(first, first + n, dtype=np.int64)
        self.seq += n  # duplicates dropped below leave gaps: seq only orders arrivals
        names, codes = x.shipments
        shipment = st.intern_shipments(names)[codes]
        device = np.full(n, -1, dtype=np.int32)
        names, codes = x.devices
        device[x.kind <= SENSOR] = st.intern_devices(names)[codes]
        key = np.where(x.kind <= SENSOR, 2 * device.astype(np.int64), 2 * shipment + 1)
        rows = Rows(x.kind, x.ts, seq, key, device, shipment, x.lat, x.lon, x.temp_c,
                    x.humidity, x.door, x.accuracy)
        h1, h2 = x.id_hash
        if not x.has_id.any():
            h1, h2 = (key * 4 + x.kind) | DERIVED, x.ts
        elif not x.has_id.all():
            h1 = np.where(x.has_id, h1, (key * 4 + x.kind) | DERIVED)
            h2 = np.where(x.has_id, h2, x.ts)
        keep = self.dedup.fresh(h1, h2)
        business = {first + i: e for i, e in x.business.items()}
        business_json = None if x.business_json is None else x.business_json.moved(first)
        if keep is not None:
            rows = rows.take(keep)
            kept = set(rows.seq[rows.kind > SENSOR].tolist())
            business = {s: e for s, e in business.items() if s in kept}
        return Decoded(rows, business, x.dead_letters, n, n - len(rows), business_json)
