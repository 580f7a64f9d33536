"""Suggested action on cold-chain alerts: divert to the nearest `cold_store` fence.

The distance is measured from the shipment's position at the alert's event time (its last GPS fix
at or before it), so the suggestion does not depend on how the stream was batched: the fix is
found in the segment of rows the pipeline is running (it tells the advisor each one), else it is
the position the state kept from before that segment.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from chainsight.contract.events import GPS
from chainsight.engine.state import State
from chainsight.ingest.rows import Rows

COLD_STORE = "cold_store"


class NearestFence(Protocol):
    """What the advisor needs of a fence set (chainsight.geofence.FenceSet has it)."""

    def nearest(self, lon: float, lat: float, kind: str) -> tuple[str, float] | None: ...


class ColdStoreAdvisor:
    """Finds the nearest cold store to a shipment; `fences` may be set (or replaced) any time."""

    def __init__(self, fences: NearestFence | None = None) -> None:
        self.fences = fences
        self._rows: Rows | None = None
        self._fixes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def segment(self, rows: Rows) -> None:
        """The rows the pipeline runs now (their shipments resolved)."""
        self._rows, self._fixes = rows, None

    def suggest(self, s: int, at: int, state: State) -> dict | None:
        """`details.suggested_action` for an alert of shipment `s` at event time `at`."""
        if self.fences is None:
            return None
        lat, lon = self._position(s, at, state)
        if np.isnan(lat):
            return None
        found = self.fences.nearest(lon, lat, COLD_STORE)
        if found is None:
            return None
        fence_id, distance = found
        return {"action": "divert_to_cold_store", "fence_id": fence_id,
                "distance_m": round(float(distance), 1)}

    def _position(self, s: int, at: int, state: State) -> tuple[float, float]:
        """Latest fix at or before `at`: in the current segment, else from before it."""
        sh = state.shipment
        rows = self._rows
        if sh.moved_in[s] == state.segment and rows is not None:
            if self._fixes is None:
                g = np.flatnonzero((rows.kind == GPS) & (rows.shipment >= 0))
                g = g[np.lexsort((g, rows.ts[g], rows.shipment[g]))]
                self._fixes = rows.shipment[g], rows.ts[g], g
            ship, ts, g = self._fixes
            lo, hi = np.searchsorted(ship, s), np.searchsorted(ship, s, side="right")
            j = lo + int(np.searchsorted(ts[lo:hi], at, side="right")) - 1
            if j >= lo:
                return float(rows.lat[g[j]]), float(rows.lon[g[j]])
            return float(sh.prev_lat[s]), float(sh.prev_lon[s])
        return float(sh.last_lat[s]), float(sh.last_lon[s])
