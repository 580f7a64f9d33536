"""`sensor_silent`: a sensor of a shipment in transit sent nothing for `sensor_silent_min`.

Silence is measured against the newest event time the engine has processed, so it fires without
waiting for the silent device; `at` is the moment the silence reached the limit. The alert resolves
at the sensor's next reading, or when the shipment is no longer in transit. A business event that
ends the transit first fires the silences due before it, so a batch that holds both the silence
and the delivery gives the alerts that smaller batches give.

The live (provisional) pipeline runs events as they arrive, so a sensor whose readings always
arrive late (a clock running behind) would look silent between two of them. There the limit is
extended by how far behind the stream the sensor's newest reading arrived, up to the allowed
lateness: the settled pipeline, which uses the limit alone, fires no sooner.
"""

from __future__ import annotations

import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.contract.events import SENSOR, Order, Scan
from chainsight.contract.times import iso
from chainsight.engine.state import NO_TS, Columns, State
from chainsight.ingest.arrival import ArrivalDelays
from chainsight.ingest.rows import Rows
from chainsight.rules.base import IdSets, Rule, devices_of, relink

# a silent sensor reports again / a gap seen only when the sensor resumed / a sensor's readings
# now belong to another shipment
RESUMED, GAP, LINKED = 1, 2, 3


@numba.njit(cache=True)
def silence_kernel(kind: np.ndarray, device: np.ndarray, ship: np.ndarray, ts: np.ndarray,
                   in_transit: np.ndarray, limit_ms: int, last: np.ndarray, last_ship: np.ndarray,
                   silent: np.ndarray, out: np.ndarray) -> int:
    """Track each sensor's last reading; write (row, RESUMED|GAP, last reading ts, its shipment)
    and (row, LINKED, previous shipment, shipment)."""
    n = 0
    for i in range(len(ts)):
        if kind[i] != SENSOR:
            continue
        d = device[i]
        if silent[d]:
            silent[d] = False
            out[n, 0], out[n, 1], out[n, 2], out[n, 3] = i, RESUMED, last[d], last_ship[d]
            n += 1
        elif (last[d] != NO_TS and ts[i] - last[d] > limit_ms and last_ship[d] >= 0
              and in_transit[last_ship[d]]):
            out[n, 0], out[n, 1], out[n, 2], out[n, 3] = i, GAP, last[d], last_ship[d]
            n += 1
        if ts[i] > last[d]:
            last[d] = ts[i]
        if ship[i] != last_ship[d]:
            out[n, 0], out[n, 1], out[n, 2], out[n, 3] = i, LINKED, last_ship[d], ship[i]
            n += 1
            last_ship[d] = ship[i]
    return n


class SilenceRule(Rule):
    name = "silence"  # names the rule's state in snapshots
    kind = "sensor_silent"
    shipment_state = ("on_road", "silent_by_shipment", "sensors_of")
    device_state = ("sensor",)

    def __init__(self, limit_ms: int, arrival: ArrivalDelays | None = None,
                 max_delay_ms: int = 0) -> None:
        """`arrival`: the live pipeline's, whose limit each sensor's delay extends (up to
        `max_delay_ms`)."""
        self.limit_ms = limit_ms
        self.arrival = arrival
        self.max_delay_ms = max_delay_ms
        self.sensor = Columns(last=(np.int64, NO_TS), shipment=(np.int32, -1),
                              silent=(np.bool_, False))
        self.on_road = Columns(in_transit=(np.bool_, False))  # as of the last business event
        self.silent_by_shipment = IdSets()
        self.sensors_of = IdSets()

    def _limits(self, devices: np.ndarray | slice = slice(None)) -> np.ndarray | int:
        """The silence limit of these sensors, in ms."""
        if self.arrival is None:
            return self.limit_ms
        n = len(self.sensor)
        self.arrival.devices.ensure(n)
        return self.limit_ms + np.minimum(self.arrival.devices.delay[:n][devices],
                                          self.max_delay_ms)

    def _open(self, d: int, s: int, last: int, state: State, book: AlertBook) -> None:
        details = {"last_reading_at": iso(last), "silent_min": self.limit_ms / 60_000}
        book.open(self.kind, state.shipments.names[s], state.devices.names[d], None,
                  last + self.limit_ms, "warning", details)

    def _resolve(self, d: int, s: int, at: int, state: State, book: AlertBook) -> None:
        book.resolve(self.kind, state.shipments.names[s], state.devices.names[d], None, at,
                     {"resumed_at": iso(at)})

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        self.sensor.ensure(len(state.devices))
        sensor = self.sensor
        out = np.empty((len(rows), 4), dtype=np.int64)
        count = silence_kernel(rows.kind, rows.device, rows.shipment, rows.ts,
                               state.shipment.in_transit, self.limit_ms, sensor.last,
                               sensor.shipment, sensor.silent, out)
        for i, code, last, s in out[:count].tolist():
            d, at = int(rows.device[i]), int(rows.ts[i])
            if code == LINKED:
                relink(self.sensors_of, d, last, s)
                continue
            if code == RESUMED:
                self.silent_by_shipment.get(s, set()).discard(d)
            else:
                self._open(d, s, last, state, book)
            self._resolve(d, s, at, state, book)

    def on_quiet_business(self, rows: Rows, events: list[Scan | Order], shipments: np.ndarray,
                          state: State) -> np.ndarray:
        """Loud: a shipment no longer in transit with a sensor silent before it, or one whose
        silence had passed unseen (`on_business` resolves or opens their alerts)."""
        self.on_road.ensure(len(state.shipments))
        self.sensor.ensure(len(state.devices))
        sensor = self.sensor
        was, now = self.on_road.in_transit[shipments], state.shipment.in_transit[shipments]
        d, j = devices_of(shipments, sensor.shipment, np.flatnonzero(~sensor.silent),
                          len(state.shipments))
        quiet_too_long = np.zeros(len(shipments), np.bool_)
        quiet_too_long[j[rows.ts[j] - sensor.last[d] > self._limits(d)]] = True
        alarmed = np.array([s in self.silent_by_shipment for s in shipments.tolist()], np.bool_)
        loud = was & ~now & (quiet_too_long | alarmed)
        self.on_road.in_transit[shipments[~loud]] = now[~loud]
        return loud

    def on_business(self, event: Scan | Order, shipment: int, state: State,
                    book: AlertBook) -> None:
        self.on_road.ensure(len(state.shipments))
        self.sensor.ensure(len(state.devices))
        was, now = self.on_road.in_transit[shipment], state.shipment.in_transit[shipment]
        self.on_road.in_transit[shipment] = now
        if now or not was:
            return
        sensor, silent = self.sensor, self.silent_by_shipment.pop(shipment, set())
        for d in self.sensors_of.get(shipment, ()):
            if not sensor.silent[d] and event.ts - sensor.last[d] > self._limits(d):
                self._open(d, shipment, int(sensor.last[d]), state, book)  # due before the event
                silent.add(d)
        for d in sorted(silent):
            sensor.silent[d] = False
            self._resolve(d, shipment, event.ts, state, book)

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        self.sensor.ensure(len(state.devices))
        sensor = self.sensor
        ship = sensor.shipment
        due = (sensor.last != NO_TS) & ~sensor.silent & (clock - sensor.last > self._limits())
        due &= ship >= 0
        due[due] &= state.shipment.in_transit[ship[due]]
        for d in np.flatnonzero(due).tolist():
            s = int(ship[d])
            sensor.silent[d] = True
            self.silent_by_shipment.setdefault(s, set()).add(d)
            self._open(d, s, int(sensor.last[d]), state, book)
