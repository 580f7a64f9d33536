"""Continuous excursion: readings continuously outside the shipment's profile (`continuous`).

Opens at the first reading at which the readings have been outside the range for `excursion_min`
of event time; resolves at the first reading back inside (the contract's rule). Readings exactly
at a limit are inside. One Numba pass per batch of readings. `HumidityRule` runs the same kernel
over humidity.
"""

from __future__ import annotations

import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.contract.times import iso
from chainsight.engine.state import NO_TS, Columns, State
from chainsight.ingest.rows import Rows
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import Rule, open_excursion, resolve_excursion

OPENED, RESOLVED = 1, 2


@numba.njit(cache=True)
def excursion_kernel(ship: np.ndarray, ts: np.ndarray, value: np.ndarray, lo: np.ndarray,
                     hi: np.ndarray, min_ms: np.ndarray, run_start: np.ndarray,
                     run_min: np.ndarray, run_max: np.ndarray, is_open: np.ndarray,
                     out: np.ndarray, out_start: np.ndarray, out_min: np.ndarray,
                     out_max: np.ndarray) -> int:
    """Advance per-shipment excursion runs over readings; write (row, OPENED|RESOLVED) to `out`."""
    n = 0
    for i in range(len(ts)):
        s = ship[i]
        t = value[i]
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


class ExcursionRule(Rule):
    """Continuous temperature excursion against the profile's min_c..max_c."""

    name = "continuous"  # names the rule's state in snapshots
    rule = "continuous"
    unit = "c"  # details: max_c / min_c / limit_c
    shipment_state = ("run",)

    def __init__(self, advisor: ColdStoreAdvisor | None = None) -> None:
        self.advisor = advisor
        self.run = Columns(start=(np.int64, NO_TS), min=(np.float64, np.nan),
                           max=(np.float64, np.nan), open=(np.bool_, False),
                           device=(np.int32, -1))

    def _inputs(self, rows: Rows, state: State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The readings and the per-shipment range they must stay in."""
        return rows.temp_c, state.shipment.min_c, state.shipment.max_c

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        self.run.ensure(len(state.shipments))
        run = self.run
        values, lo, hi = self._inputs(rows, state)
        n = len(rows)
        out = np.empty((n, 2), dtype=np.int64)
        start, vmin, vmax = np.empty(n, np.int64), np.empty(n), np.empty(n)
        count = excursion_kernel(rows.shipment, rows.ts, values, lo, hi,
                                 state.shipment.excursion_ms, run.start, run.min, run.max,
                                 run.open, out, start, vmin, vmax)
        for (i, code), begun, low, high in zip(out[:count].tolist(), start[:count].tolist(),
                                               vmin[:count].tolist(), vmax[:count].tolist(),
                                               strict=True):
            s, at = int(rows.shipment[i]), int(rows.ts[i])
            details = self._details(float(lo[s]), float(hi[s]), begun, low, high, at)
            if code == OPENED:
                run.device[s] = rows.device[i]
                details = {"started_at": iso(begun), **details}
                open_excursion(book, state, self.advisor, self.rule, s, int(run.device[s]), at,
                               begun, details, reading_c=float(rows.temp_c[i]))
            else:
                resolve_excursion(book, state, self.rule, s, int(run.device[s]), at, details)

    def _details(self, lo: float, hi: float, started: int, vmin: float, vmax: float,
                 at: int) -> dict:
        """Extremes, the limit passed and the duration (`started_at` is added on opening)."""
        u = self.unit
        details: dict = {}
        if vmax > hi:
            details.update({f"max_{u}": vmax, f"limit_{u}": hi})
        if vmin < lo:
            details[f"min_{u}"] = vmin
            details.setdefault(f"limit_{u}", lo)
        details["duration_min"] = round((at - started) / 60_000, 3)
        return details

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        pass
