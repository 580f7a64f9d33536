"""Mean Kinetic Temperature over the trip so far (`mkt`).

    T_mk = (ΔH/R) / -ln( Σ tᵢ·exp(-ΔH/(R·Tᵢ)) / Σ tᵢ )      (kelvin)

with ΔH = 83.144 kJ/mol and R = 8.314462618 J/(mol·K), so ΔH/R = 83144 / 8.314462618
≈ 9999.925 K (used exactly; USP ⟨1079.2⟩ rounds it to 10,000 K). The time weight tᵢ of a reading
is the interval to the shipment's next reading (its temperature is taken to hold until then), so
the MKT covers the trip from its first to its latest reading. Per-shipment running sums make it
incremental across batches.

MKT is always computed and reported (`mkt_c` in the engine's state); it alerts when it leaves the
profile's range, once it covers at least the profile's `mkt_min_h` (profiles without it, such as
frozen goods, for which USP does not use MKT, never alert). It resolves when MKT is back in range.
It is reported beside the other rules and never hides an excursion.
"""

from __future__ import annotations

import math

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
    resolve_excursion,
)

H_OVER_R = 83_144.0 / 8.314462618  # ΔH/R in kelvin
KELVIN = 273.15
OPENED, RESOLVED = 1, 2


@numba.njit(cache=True)
def mkt_kernel(ship: np.ndarray, ts: np.ndarray, temp: np.ndarray, lo: np.ndarray,
               hi: np.ndarray, min_ms: np.ndarray, last_ts: np.ndarray, last_c: np.ndarray,
               weight: np.ndarray, weighted: np.ndarray, first: np.ndarray, vmin: np.ndarray,
               vmax: np.ndarray, is_out: np.ndarray, out: np.ndarray,
               out_val: np.ndarray) -> int:
    """Add each reading's predecessor to its shipment's sums; write (row, OPENED|RESOLVED) where
    the MKT of an alerting shipment leaves or re-enters the range, with (MKT, covered ms, the
    extreme reading on its side of the range) at that row."""
    n = 0
    for i in range(len(ts)):
        s = ship[i]
        t = temp[i]
        if s < 0 or np.isnan(t):
            continue
        if last_ts[s] == NO_TS:
            first[s] = ts[i]
        elif ts[i] > last_ts[s]:
            w = float(ts[i] - last_ts[s])
            weight[s] += w
            weighted[s] += w * math.exp(-H_OVER_R / (last_c[s] + KELVIN))
        elif ts[i] < last_ts[s]:
            continue  # a lagging device's older reading: no interval to weigh
        last_ts[s], last_c[s] = ts[i], t
        if np.isnan(vmin[s]) or t < vmin[s]:
            vmin[s] = t
        if np.isnan(vmax[s]) or t > vmax[s]:
            vmax[s] = t
        if min_ms[s] < 0 or weight[s] <= 0 or weight[s] < min_ms[s]:
            continue
        m = H_OVER_R / -math.log(weighted[s] / weight[s]) - KELVIN
        outside = m < lo[s] or m > hi[s]
        if outside != is_out[s]:
            is_out[s] = outside
            out[n, 0], out[n, 1] = i, OPENED if outside else RESOLVED
            out_val[n, 0], out_val[n, 1] = m, weight[s]
            out_val[n, 2] = vmax[s] if m > hi[s] else vmin[s]
            n += 1
    return n


class MktRule(Rule):
    name = "mkt"  # names the rule's state in snapshots
    rule = "mkt"
    shipment_state = ("sums",)

    def __init__(self, advisor: ColdStoreAdvisor | None = None) -> None:
        self.advisor = advisor
        self.sums = Columns(min_ms=(np.int64, -1), last_ts=(np.int64, NO_TS),
                            last_c=(np.float64, np.nan), weight=(np.float64, 0.0),
                            weighted=(np.float64, 0.0), first=(np.int64, NO_TS),
                            min=(np.float64, np.nan), max=(np.float64, np.nan),
                            out=(np.bool_, False), device=(np.int32, -1))

    def view(self, shipments: np.ndarray) -> dict[str, list]:
        """Each shipment's MKT so far in °C (`mkt_c`), None before it has two readings."""
        self.sums.ensure(int(shipments.max(initial=-1)) + 1)
        return {"mkt_c": [
            round(H_OVER_R / -math.log(weighted / weight) - KELVIN, 3) if weight > 0 else None
            for weight, weighted in zip(self.sums.weight[shipments].tolist(),
                                        self.sums.weighted[shipments].tolist(), strict=True)]}

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        self.sums.ensure(len(state.shipments))
        m, sh = self.sums, state.shipment
        out, value = np.empty((len(rows), 2), np.int64), np.empty((len(rows), 3))
        count = mkt_kernel(rows.shipment, rows.ts, rows.temp_c, sh.min_c, sh.max_c, m.min_ms,
                           m.last_ts, m.last_c, m.weight, m.weighted, m.first, m.min, m.max,
                           m.out, out, value)
        for j in range(count):
            i, code = out[j]
            s, at = int(rows.shipment[i]), int(rows.ts[i])
            mkt, covered, extreme = value[j].tolist()
            details = {"mkt_c": round(mkt, 3), "started_at": iso(int(m.first[s])),
                       "duration_min": round(covered / 60_000, 3)}
            if code == OPENED:
                hi = mkt > sh.max_c[s]
                details[f"{'max' if hi else 'min'}_c"] = extreme
                details["limit_c"] = float(sh.max_c[s] if hi else sh.min_c[s])
                m.device[s] = rows.device[i]
                open_excursion(book, state, self.advisor, self.rule, s, int(m.device[s]), at, at,
                               details)
            else:
                resolve_excursion(book, state, self.rule, s, int(m.device[s]), at, details)

    def on_profile(self, shipment: int, profile: Profile | None, state: State) -> None:
        self.sums.ensure(len(state.shipments))
        hours = None if profile is None or profile.mkt_min_h is None else profile.mkt_min_h * 60
        self.sums.min_ms[shipment] = minutes_ms(hours)
