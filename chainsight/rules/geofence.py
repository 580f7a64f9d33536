"""Geofence detection in the pipeline: enter/exit notices, dwell and route deviation.

GPS rows pass the configured quality filters, then the `FenceTracker` turns them into per-device,
per-fence transitions. A shipment in transit whose order names a corridor (`corridor_id`) raises
`route_deviation` when its tracker leaves that corridor (by `route_deviation_min_metres` for
`route_deviation_min_fixes` fixes), resolved when it is back inside; a
`dwell_exceeded` alert stays open until the device leaves the fence.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.config import Settings
from chainsight.contract.events import GPS, ORDER, Order, Scan
from chainsight.engine.state import State
from chainsight.geofence.fences import FenceSet
from chainsight.geofence.gps_filter import GpsFilter
from chainsight.geofence.tracker import FenceTracker, FenceTransition
from chainsight.ingest.rows import Rows
from chainsight.rules.base import Rule


class GeofenceRule(Rule):
    name = "geofence"  # names the rule's state in snapshots
    shipment_state = ("corridor_of",)

    def __init__(self, fences: FenceSet, settings: Settings) -> None:
        self.tracker = FenceTracker(fences, settings.geofence_min_fixes,
                                    settings.geofence_min_seconds, settings.geofence_min_metres)
        self.gps_filter = GpsFilter(max_accuracy_m=settings.gps_max_accuracy_m,
                                    max_speed_kmh=settings.gps_max_speed_kmh,
                                    min_interval_s=settings.gps_min_interval_s,
                                    drop_zero=settings.gps_drop_zero)
        # Route deviation has its own tracker with hysteresis, so that a truck parked at the
        # end of its corridor does not flap in and out with GPS jitter.
        self.route_tracker = FenceTracker(fences, settings.route_deviation_min_fixes,
                                          0, settings.route_deviation_min_metres)
        self.corridor_of: dict[int, str] = {}  # shipment -> its assigned corridor fence id

    def dump_state(self) -> dict:
        return {**super().dump_state(), "tracker": self.tracker.dump_state(),
                "gps_filter": self.gps_filter.dump_state(),
                "route_tracker": self.route_tracker.dump_state()}

    def load_state(self, data: dict) -> None:
        super().load_state(data)
        self.tracker.load_state(data["tracker"])
        self.gps_filter.load_state(data["gps_filter"])
        self.route_tracker.load_state(data["route_tracker"])

    def copy_entities(self, src: Self, shipments: np.ndarray, devices: np.ndarray) -> None:
        """Corridors of the shipments; trackers and GPS filter state of the devices."""
        super().copy_entities(src, shipments, devices)
        self.tracker.copy_devices(src.tracker, devices)
        self.route_tracker.copy_devices(src.route_tracker, devices)
        self.gps_filter.copy_devices(src.gps_filter, devices)

    @property
    def fences(self) -> FenceSet:
        return self.tracker.fences

    def replace_fences(self, fences: FenceSet) -> None:
        """New fences while running; unchanged fences keep their per-device state."""
        self.tracker.replace_fences(fences)
        self.route_tracker.replace_fences(fences)

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        gps = np.flatnonzero(rows.kind == GPS)
        if not len(gps):
            return
        keep = self.gps_filter.apply(rows.device[gps], rows.ts[gps], rows.lon[gps],
                                     rows.lat[gps], rows.accuracy[gps])
        gps = gps[keep]
        device, ts, lon, lat = rows.device[gps], rows.ts[gps], rows.lon[gps], rows.lat[gps]
        for tr in self.tracker.update(device, ts, lon, lat):
            # a dwell deadline may pass at another device's fix: it is its own device's
            s = state.device.shipment[tr.device] if tr.kind == "dwell_exceeded" \
                else rows.shipment[gps[tr.fix_index]]
            self._apply(tr, int(s), state, book)
        if self.corridor_of:
            for tr in self.route_tracker.update(device, ts, lon, lat):
                self._route(tr, int(rows.shipment[gps[tr.fix_index]]), state, book)

    def on_business_rows(self, rows: Rows, events: list[Scan | Order], state: State,
                         book: AlertBook) -> None:
        for j in np.flatnonzero(rows.kind == ORDER).tolist():
            if events[j].corridor_id is not None:
                self.corridor_of[int(rows.shipment[j])] = events[j].corridor_id

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        for tr in self.tracker.advance(clock):
            self._apply(tr, int(state.device.shipment[tr.device]), state, book)

    def _apply(self, tr: FenceTransition, s: int, state: State, book: AlertBook) -> None:
        shipment = state.shipments.names[s] if s >= 0 else None
        device = state.devices.names[tr.device]
        fence = tr.fence_id
        if tr.kind == "dwell_exceeded":
            book.open("dwell_exceeded", shipment, device, fence, tr.ts_ms, "warning", tr.details)
            return
        book.notice(tr.kind, shipment, device, fence, tr.ts_ms, "info", tr.details)
        if tr.kind == "geofence_exit":
            book.resolve("dwell_exceeded", shipment, device, fence, tr.ts_ms)

    def _route(self, tr: FenceTransition, s: int, state: State, book: AlertBook) -> None:
        fence = tr.fence_id
        if s < 0 or self.corridor_of.get(s) != fence or tr.kind == "dwell_exceeded":
            return
        shipment, device = state.shipments.names[s], state.devices.names[tr.device]
        if tr.kind == "geofence_exit" and state.shipment.in_transit[s]:
            book.open("route_deviation", shipment, device, fence, tr.ts_ms, "warning",
                      {"corridor_id": fence})
        elif tr.kind == "geofence_enter":
            book.resolve("route_deviation", shipment, device, fence, tr.ts_ms)

    def metrics(self) -> dict[str, int]:
        """Fixes dropped by each GPS quality filter so far (`gps_dropped.REASON`)."""
        return {f"gps_dropped.{reason}": n for reason, n in self.gps_filter.counts.items()}
