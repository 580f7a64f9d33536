"""`temperature_excursion`: readings continuously outside the shipment's profile.

Opens at the first reading at which the readings have been outside the range for `excursion_min`
of event time; resolves at the first reading back inside. One Numba pass per batch of readings.
"""

from __future__ import annotations

import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.events import Order, Scan, iso
from chainsight.ingest import Rows
from chainsight.state import NO_TS, Columns, State

OPENED, RESOLVED = 1, 2


@numba.njit(cache=True)
def excursion_kernel(ship: np.ndarray, ts: np.ndarray, temp: np.ndarray, lo: np.ndarray,
                     hi: np.ndarray, min_ms: np.ndarray, run_start: np.ndarray,
                     run_min: np.ndarray, run_max: np.ndarray, is_open: np.ndarray,
                     out: np.ndarray, out_start: np.ndarray, out_min: np.ndarray,
                     out_max: np.ndarray) -> int:
    """Advance per-shipment excursion runs over readings; write (row, OPENED|RESOLVED) to `out`."""
    n = 0
    for i in range(len(ts)):
        s = ship[i]
        t = temp[i]
        if s < 0 or np.isnan(t) or min_ms[s] < 0:
            continue
        if t < lo[s] or t > hi[s]:
            if run_start[s] == NO_TS:
                run_start[s] = ts[i]
                run_min[s] = t
                run_max[s] = t
            else:
                run_min[s] = min(run_min[s], t)
                run_max[s] = max(run_max[s], t)
            if not is_open[s] and ts[i] - run_start[s] >= min_ms[s]:
                is_open[s] = True
                out[n, 0], out[n, 1] = i, OPENED
                out_start[n], out_min[n], out_max[n] = run_start[s], run_min[s], run_max[s]
                n += 1
        elif run_start[s] != NO_TS:
            if is_open[s]:
                is_open[s] = False
                out[n, 0], out[n, 1] = i, RESOLVED
                out_start[n], out_min[n], out_max[n] = run_start[s], run_min[s], run_max[s]
                n += 1
            run_start[s] = NO_TS
    return n


class ExcursionRule:
    kind = "temperature_excursion"

    def __init__(self) -> None:
        self.run = Columns(start=(np.int64, NO_TS), min=(np.float64, np.nan),
                           max=(np.float64, np.nan), open=(np.bool_, False),
                           device=(np.int32, -1))

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        self.run.ensure(len(state.shipments))
        sh, run = state.shipment, self.run
        n = len(rows)
        out = np.empty((n, 2), dtype=np.int64)
        start, tmin, tmax = np.empty(n, np.int64), np.empty(n), np.empty(n)
        count = excursion_kernel(rows.shipment, rows.ts, rows.temp_c, sh.min_c, sh.max_c,
                                 sh.excursion_ms, run.start, run.min, run.max, run.open,
                                 out, start, tmin, tmax)
        for j in range(count):
            i, code = out[j]
            s = int(rows.shipment[i])
            at = int(rows.ts[i])
            details = self._details(state, s, int(start[j]), float(tmin[j]), float(tmax[j]), at)
            shipment = state.shipments.names[s]
            if code == OPENED:
                run.device[s] = rows.device[i]
                device = state.devices.names[run.device[s]]
                book.open(self.kind, shipment, device, None, at, "warning", details)
            else:
                device = state.devices.names[run.device[s]]
                book.resolve(self.kind, shipment, device, None, at, details)

    @staticmethod
    def _details(state: State, s: int, started: int, tmin: float, tmax: float, at: int) -> dict:
        lo, hi = float(state.shipment.min_c[s]), float(state.shipment.max_c[s])
        details: dict = {"started_at": iso(started), "profile": state.info[s].profile}
        if tmax > hi:
            details.update(max_c=tmax, limit_c=hi)
        if tmin < lo:
            details.update(min_c=tmin)
            details.setdefault("limit_c", lo)
        details["duration_min"] = round((at - started) / 60_000, 3)
        return details

    def on_business(self, event: Scan | Order, shipment: int, state: State,
                    book: AlertBook) -> None:
        pass

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        pass
