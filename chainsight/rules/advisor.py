"""Suggested action on cold-chain alerts: divert to the nearest `cold_store` fence.

The distance is measured from the shipment's position at the alert's event time (its last GPS fix
at or before it), so the suggestion does not depend on how the stream was batched. The advisor
follows positions as a rule hook: it must come before the rules that ask it, in every batch.
"""

from __future__ import annotations

from typing import Protocol, Self

import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.contract.events import GPS, Order, Scan
from chainsight.engine.state import NO_TS, Columns, State
from chainsight.ingest.rows import Rows
from chainsight.rules.base import Rule

COLD_STORE = "cold_store"


class NearestFence(Protocol):
    """What the advisor needs of a fence set (chainsight.geofence.FenceSet has it)."""

    def nearest(self, lon: float, lat: float, kind: str) -> tuple[str, float] | None: ...


@numba.njit(cache=True)
def fold_positions(kind: np.ndarray, ship: np.ndarray, ts: np.ndarray, lat: np.ndarray,
                   lon: np.ndarray, p_lat: np.ndarray, p_lon: np.ndarray,
                   p_ts: np.ndarray) -> None:
    """Keep each shipment's newest GPS position."""
    for i in range(len(ts)):
        s = ship[i]
        if kind[i] == GPS and s >= 0 and ts[i] >= p_ts[s]:
            p_lat[s], p_lon[s], p_ts[s] = lat[i], lon[i], ts[i]


class ColdStoreAdvisor(Rule):
    """Finds the nearest cold store to a shipment; `fences` may be set (or replaced) any time."""

    name = "advisor"  # names the rule's state in snapshots
    shipment_state = ("pos",)

    def __init__(self, fences: NearestFence | None = None) -> None:
        self.fences = fences
        self.pos = Columns(lat=(np.float64, np.nan), lon=(np.float64, np.nan),
                           ts=(np.int64, NO_TS))  # as of the end of the previous batch
        self._rows: Rows | None = None
        self._fixes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def dump_state(self) -> dict:
        """Positions, and the previous batch's rows (folded into them lazily)."""
        return {"pos": self.pos.dump_state(),
                "rows": None if self._rows is None else self._rows.dump_state()}

    def load_state(self, data: dict) -> None:
        self.pos.load_state(data["pos"])
        self._rows = None if data["rows"] is None else Rows.from_state(data["rows"])
        self._fixes = None

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        self.pos.ensure(len(state.shipments))
        if self._rows is not None:
            self._fold(self._rows)
        self._rows, self._fixes = rows, None

    def copy_entities(self, src: Self, shipments: np.ndarray, devices: np.ndarray) -> None:
        """Positions as if both advisors had folded their previous batch's rows (which the
        next batch would do before any suggestion), then `src`'s positions of `shipments`."""
        if self._rows is not None:
            self._fold(self._rows)
        self._rows, self._fixes = None, None
        super().copy_entities(src, shipments, devices)
        rows = src._rows
        if rows is not None:
            self._fold(rows.take(np.flatnonzero(np.isin(rows.shipment, shipments))))

    def _fold(self, rows: Rows) -> None:
        """Take the newest GPS position of each shipment in `rows` into `pos`."""
        p = self.pos
        fold_positions(rows.kind, rows.shipment, rows.ts, rows.lat, rows.lon, p.lat, p.lon,
                       p.ts)

    def on_business(self, event: Scan | Order, shipment: int, state: State,
                    book: AlertBook) -> None:
        pass

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        pass

    def suggest(self, s: int, at: int) -> dict | None:
        """`details.suggested_action` for an alert of shipment `s` at event time `at`."""
        if self.fences is None:
            return None
        lat, lon = self._position(s, at)
        if np.isnan(lat):
            return None
        found = self.fences.nearest(lon, lat, COLD_STORE)
        if found is None:
            return None
        fence_id, distance = found
        return {"action": "divert_to_cold_store", "fence_id": fence_id,
                "distance_m": round(float(distance), 1)}

    def _position(self, s: int, at: int) -> tuple[float, float]:
        """Latest fix at or before `at`: in the current rows, else from earlier batches."""
        rows = self._rows
        if rows is not None:
            if self._fixes is None:
                g = np.flatnonzero((rows.kind == GPS) & (rows.shipment >= 0))
                g = g[np.lexsort((g, rows.ts[g], rows.shipment[g]))]
                self._fixes = rows.shipment[g], rows.ts[g], g
            ship, ts, g = self._fixes
            lo, hi = np.searchsorted(ship, s), np.searchsorted(ship, s, side="right")
            j = lo + int(np.searchsorted(ts[lo:hi], at, side="right")) - 1
            if j >= lo:
                return float(rows.lat[g[j]]), float(rows.lon[g[j]])
        if s >= len(self.pos):
            return np.nan, np.nan
        return float(self.pos.lat[s]), float(self.pos.lon[s])
