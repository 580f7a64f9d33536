"""Door left open (`door_open`): a sensor reports its door open for longer than the profile's
`door_open_max_min` while the shipment is on the road.

On the road means in transit and not unloading: an `unloaded` scan pauses the rule (doors open
at the dock) until the next `loaded` scan. Time is counted from the first reading with the door
open (or from the moment the rule was armed, if later). Like silence, the rule fires as event time
passes, without waiting for the device: `at` is the moment the limit was passed. It resolves at
the first reading with the door closed, or when the shipment leaves the road.
"""

from __future__ import annotations

import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.config import Profile
from chainsight.contract.events import SENSOR, Order, Scan
from chainsight.contract.times import iso
from chainsight.engine.state import NO_TS, Columns, State
from chainsight.ingest.rows import Rows
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import (
    IdSets,
    Rule,
    devices_of,
    minutes_ms,
    open_excursion,
    relink,
    resolve_excursion,
)

# limit passed / closed after an alert / both, seen on closing / the sensor's readings now
# belong to another shipment (out[2]: the previous one)
OPENED, CLOSED, GAP, LINKED = 1, 2, 3, 4


@numba.njit(cache=True)
def door_kernel(kind: np.ndarray, device: np.ndarray, ship: np.ndarray, ts: np.ndarray,
                door: np.ndarray, temp: np.ndarray, limit: np.ndarray, armed: np.ndarray,
                armed_at: np.ndarray, since: np.ndarray, dev_ship: np.ndarray,
                alarmed: np.ndarray, tmax: np.ndarray, out: np.ndarray,
                out_tmax: np.ndarray) -> int:
    """Follow each sensor's door; write (row, OPENED|CLOSED|GAP, counted-from time) and the
    highest temperature read with the door open before the row (so, up to the limit)."""
    n = 0
    for i in range(len(ts)):
        if kind[i] != SENSOR:
            continue
        d, s = device[i], ship[i]
        if dev_ship[d] != s:
            out[n, 0], out[n, 1], out[n, 2] = i, LINKED, dev_ship[d]
            n += 1
            dev_ship[d] = s
        if door[i] == 1 and since[d] == NO_TS:
            since[d] = ts[i]
            tmax[d] = np.nan
        if since[d] == NO_TS:
            continue
        live = s >= 0 and armed[s] and limit[s] >= 0
        start = max(since[d], armed_at[s]) if s >= 0 else since[d]
        code = 0
        if door[i] == 0:
            if alarmed[d]:
                alarmed[d] = False
                code = CLOSED
            elif live and ts[i] - start > limit[s]:
                code = GAP
            since[d] = NO_TS
        elif live and not alarmed[d] and ts[i] - start > limit[s]:
            alarmed[d] = True
            code = OPENED
        if code:
            out[n, 0], out[n, 1], out[n, 2] = i, code, start
            out_tmax[n] = tmax[d]
            n += 1
        if not np.isnan(temp[i]) and (np.isnan(tmax[d]) or temp[i] > tmax[d]):
            tmax[d] = temp[i]
    return n


class DoorRule(Rule):
    name = "door"  # names the rule's state in snapshots
    rule = "door_open"
    shipment_state = ("road", "alarmed_by_shipment", "sensors_of")
    device_state = ("sensor",)

    def __init__(self, advisor: ColdStoreAdvisor | None = None) -> None:
        self.advisor = advisor
        self.road = Columns(limit=(np.int64, -1), armed=(np.bool_, False),
                            armed_at=(np.int64, NO_TS), unloaded=(np.bool_, False))
        self.sensor = Columns(since=(np.int64, NO_TS), shipment=(np.int32, -1),
                              alarmed=(np.bool_, False), tmax=(np.float64, np.nan))
        self.alarmed_by_shipment = IdSets()
        self.sensors_of = IdSets()

    def _open(self, d: int, s: int, start: int, tmax: float, state: State,
              book: AlertBook) -> None:
        limit = int(self.road.limit[s])
        at = start + limit
        details = {"started_at": iso(start), "door_limit_min": limit / 60_000,
                   "duration_min": limit / 60_000}
        if not np.isnan(tmax):
            details.update(max_c=tmax, limit_c=float(state.shipment.max_c[s]))
        self.alarmed_by_shipment.setdefault(s, set()).add(d)
        open_excursion(book, state, self.advisor, self.rule, s, d, at, start, details)

    def _resolve(self, d: int, s: int, start: int, at: int, state: State,
                 book: AlertBook) -> None:
        self.alarmed_by_shipment.get(s, set()).discard(d)
        details = {"duration_min": round((at - start) / 60_000, 3)}  # closed at the record's at
        resolve_excursion(book, state, self.rule, s, d, at, details)

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        self.road.ensure(len(state.shipments))
        self.sensor.ensure(len(state.devices))
        road, sensor = self.road, self.sensor
        out, tmax = np.empty((len(rows), 3), np.int64), np.empty(len(rows))
        count = door_kernel(rows.kind, rows.device, rows.shipment, rows.ts, rows.door,
                            rows.temp_c, road.limit, road.armed, road.armed_at, sensor.since,
                            sensor.shipment, sensor.alarmed, sensor.tmax, out, tmax)
        for (i, code, start), hottest in zip(out[:count].tolist(), tmax[:count].tolist(),
                                             strict=True):
            d, s, at = int(rows.device[i]), int(rows.shipment[i]), int(rows.ts[i])
            if code == LINKED:
                relink(self.sensors_of, d, start, s)
            if code in (OPENED, GAP):
                self._open(d, s, start, hottest, state, book)
            if code in (CLOSED, GAP):
                self._resolve(d, s, start, at, state, book)

    def on_profile(self, shipment: int, profile: Profile | None, state: State) -> None:
        self.road.ensure(len(state.shipments))
        self.road.limit[shipment] = minutes_ms(profile and profile.door_open_max_min)

    def _arming(self, events: list[Scan | Order], shipments: np.ndarray,
                state: State) -> tuple[np.ndarray, np.ndarray]:
        """After these events of distinct shipments: whether each is unloaded, and whether its
        door limits are armed (in transit and loaded)."""
        road = self.road
        road.ensure(len(state.shipments))
        step = [e.step if type(e) is Scan else None for e in events]
        unloaded = np.where(np.array([x == "unloaded" for x in step], np.bool_), True,
                            road.unloaded[shipments]
                            & ~np.array([x == "loaded" for x in step], np.bool_))
        return unloaded, state.shipment.in_transit[shipments] & ~unloaded

    def on_quiet_business(self, rows: Rows, events: list[Scan | Order], shipments: np.ndarray,
                          state: State) -> np.ndarray:
        """Loud: a shipment disarmed after a door's limit had passed (`_due` opens its alert),
        or not armed with alarms kept."""
        road, s = self.road, shipments
        unloaded, armed = self._arming(events, s, state)
        was = road.armed[s]
        loud = was & ~armed & self._overdue(s, rows.ts, state)
        if self.alarmed_by_shipment:
            loud |= ~armed & np.array([x in self.alarmed_by_shipment for x in s.tolist()],
                                      np.bool_)
        quiet = ~loud
        road.unloaded[s[quiet]] = unloaded[quiet]
        rising = quiet & armed & ~was
        road.armed_at[s[rising]] = rows.ts[rising]
        road.armed[s[quiet]] = armed[quiet]
        return loud

    def _overdue(self, shipments: np.ndarray, at: np.ndarray, state: State) -> np.ndarray:
        """Whether each shipment (distinct ones) has a sensor whose door limit, counted as
        `_due` counts it, had passed before its time `at`."""
        sensor, road = self.sensor, self.road
        sensor.ensure(len(state.devices))
        open_doors = np.flatnonzero((sensor.since != NO_TS) & ~sensor.alarmed)
        d, j = devices_of(shipments, sensor.shipment, open_doors, len(state.shipments))
        s = shipments[j]
        start = np.maximum(sensor.since[d], road.armed_at[s])
        overdue = np.zeros(len(shipments), np.bool_)
        overdue[j[(road.limit[s] >= 0) & (at[j] - start > road.limit[s])]] = True
        return overdue

    def on_business(self, event: Scan | Order, shipment: int, state: State,
                    book: AlertBook) -> None:
        road, s = self.road, shipment
        unloaded, now_armed = self._arming([event], np.array([s]), state)
        road.unloaded[s], armed = unloaded[0], bool(now_armed[0])
        if road.armed[s] and not armed:
            self._due(s, event.ts, state, book)  # limits passed before the event
        if armed and not road.armed[s]:
            road.armed_at[s] = event.ts
        road.armed[s] = armed
        if not armed:
            for d in sorted(self.alarmed_by_shipment.pop(s, ())):
                self.sensor.alarmed[d] = False
                start = max(int(self.sensor.since[d]), int(road.armed_at[s]))
                self._resolve(d, s, start, event.ts, state, book)

    def _due(self, s: int, at: int, state: State, book: AlertBook) -> None:
        """Open the alerts of shipment `s` whose limit had passed before `at`."""
        sensor, road = self.sensor, self.road
        for d in sorted(self.sensors_of.get(s, ())):
            start = max(int(sensor.since[d]), int(road.armed_at[s]))
            if sensor.since[d] != NO_TS and not sensor.alarmed[d] and road.limit[s] >= 0 \
                    and at - start > road.limit[s]:
                sensor.alarmed[d] = True
                self._open(d, s, start, float(sensor.tmax[d]), state, book)

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        self.sensor.ensure(len(state.devices))
        self.road.ensure(len(state.shipments))
        sensor, road = self.sensor, self.road
        cand = np.flatnonzero((sensor.since != NO_TS) & ~sensor.alarmed & (sensor.shipment >= 0))
        s = sensor.shipment[cand]
        start = np.maximum(sensor.since[cand], road.armed_at[s])
        due = road.armed[s] & (road.limit[s] >= 0) & (clock - start > road.limit[s])
        for d, sd, st in zip(cand[due].tolist(), s[due].tolist(), start[due].tolist(),
                             strict=True):
            sensor.alarmed[d] = True  # no reading of d is past the limit yet: tmax is up to it
            self._open(d, sd, st, float(sensor.tmax[d]), state, book)
