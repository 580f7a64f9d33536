"""Cumulative time out of range (`cumulative`): the trip's total time outside the profile's
range exceeds its `cumulative_budget_min` (stability data allows so much, however it is split).

A run of readings outside counts from its first reading outside to the first reading back inside
(the temperature is taken to hold until the next reading); a run still going counts up to the
current reading. The alert opens at the first reading at which the total is more than the budget
and never clears by itself: a spent budget needs a person's decision (acknowledge, then resolve
with a comment). Readings exactly at a limit are inside.
"""

from __future__ import annotations

import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.config import Profile
from chainsight.contract.times import iso
from chainsight.engine.state import NO_TS, Columns, State
from chainsight.ingest.rows import Rows
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import (
    Rule,
    minutes_ms,
    open_excursion,
)


@numba.njit(cache=True)
def cumulative_kernel(ship: np.ndarray, ts: np.ndarray, temp: np.ndarray, lo: np.ndarray,
                      hi: np.ndarray, budget: np.ndarray, run_start: np.ndarray,
                      spent: np.ndarray, first: np.ndarray, vmin: np.ndarray, vmax: np.ndarray,
                      alerted: np.ndarray, out: np.ndarray, out_total: np.ndarray,
                      out_range: np.ndarray) -> int:
    """Accumulate time outside per shipment; write the rows at which a budget is exceeded, with
    the total and the lowest and highest readings outside so far."""
    n = 0
    for i in range(len(ts)):
        s = ship[i]
        t = temp[i]
        if s < 0 or np.isnan(t) or budget[s] < 0:
            continue
        if t < lo[s] or t > hi[s]:
            if run_start[s] == NO_TS:
                run_start[s] = ts[i]
                if first[s] == NO_TS:
                    first[s] = ts[i]
            if np.isnan(vmin[s]) or t < vmin[s]:
                vmin[s] = t
            if np.isnan(vmax[s]) or t > vmax[s]:
                vmax[s] = t
            total = spent[s] + max(ts[i] - run_start[s], 0)
        else:
            if run_start[s] != NO_TS:
                spent[s] += max(ts[i] - run_start[s], 0)
                run_start[s] = NO_TS
            total = spent[s]
        if not alerted[s] and total > budget[s]:
            alerted[s] = True
            out[n], out_total[n] = i, total
            out_range[n, 0], out_range[n, 1] = vmin[s], vmax[s]
            n += 1
    return n


class CumulativeRule(Rule):
    name = "cumulative"  # names the rule's state in snapshots
    rule = "cumulative"
    shipment_state = ("trip",)

    def __init__(self, advisor: ColdStoreAdvisor | None = None) -> None:
        self.advisor = advisor
        self.trip = Columns(budget=(np.int64, -1), run_start=(np.int64, NO_TS),
                            spent=(np.int64, 0), first=(np.int64, NO_TS),
                            min=(np.float64, np.nan), max=(np.float64, np.nan),
                            alerted=(np.bool_, False))

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        self.trip.ensure(len(state.shipments))
        trip, sh = self.trip, state.shipment
        n = len(rows)
        out, total, extremes = np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 2))
        count = cumulative_kernel(rows.shipment, rows.ts, rows.temp_c, sh.min_c, sh.max_c,
                                  trip.budget, trip.run_start, trip.spent, trip.first, trip.min,
                                  trip.max, trip.alerted, out, total, extremes)
        for i, spent, (vmin, vmax) in zip(out[:count].tolist(), total[:count].tolist(),
                                          extremes[:count].tolist(), strict=True):
            s, at = int(rows.shipment[i]), int(rows.ts[i])
            details = {"started_at": iso(int(trip.first[s])),
                       "cumulative_min": round(spent / 60_000, 3),
                       "budget_min": round(int(trip.budget[s]) / 60_000, 3),
                       "duration_min": round(spent / 60_000, 3)}
            if vmax > sh.max_c[s]:
                details.update(max_c=vmax, limit_c=float(sh.max_c[s]))
            if vmin < sh.min_c[s]:
                details["min_c"] = vmin
                details.setdefault("limit_c", float(sh.min_c[s]))
            open_excursion(book, state, self.advisor, self.rule, s, int(rows.device[i]), at, at,
                           details)

    def on_profile(self, shipment: int, profile: Profile | None, state: State) -> None:
        self.trip.ensure(len(state.shipments))
        self.trip.budget[shipment] = minutes_ms(profile and profile.cumulative_budget_min)
