"""What the ETA knows of each trip, updated from its GPS fixes as they are processed.

Per shipment, in columns indexed by its dense id: the destination and lane from its order, the
last fix, a recent speed (exponentially weighted over ~10 minutes of implied fix-to-fix speed),
stops and the dwell so far (a stop starts below 5 km/h and ends above 15 km/h), the departure
and the last prediction. One Numba kernel runs over a batch of rows in event-time order and
writes out *samples*: the moments a prediction is due (the first fix of a trip, a stop starting
or ending, and every `interval` of event time, at exactly that time), each with a snapshot of the
trip's features then. A prediction's time and features never depend on how rows were batched.
"""

from __future__ import annotations

import numba
import numpy as np

from chainsight import jit
from chainsight.contract.events import GPS
from chainsight.engine.state import NO_TS, Columns

EARTH_M = 6_371_008.8
STOP_KMH, MOVE_KMH = 5.0, 15.0  # a stop starts below, ends above
OUTLIER_KMH = 160.0  # a fix this far from the last one is ignored
SPEED_TAU_MS = 600_000.0  # the recent speed's time constant
FIRST, DUE, STOP_STARTED, STOP_ENDED = 0, 1, 2, 3  # why the kernel took a sample

# a sample's snapshot of its trip (columns of `Samples.features`)
SNAPSHOT = ("fix_ts", "lat", "lon", "speed_kmh", "stopped", "stop_ms", "dwell_ms", "stops",
            "depart")


def trip_columns() -> Columns:
    """The per-shipment trip state."""
    return Columns(
        dest_lat=(np.float64, np.nan), dest_lon=(np.float64, np.nan),
        origin_lat=(np.float64, np.nan), origin_lon=(np.float64, np.nan),
        lane=(np.int32, -1), shard=(np.int32, 0), promised=(np.int64, NO_TS),
        fix_ts=(np.int64, NO_TS), fix_lat=(np.float64, np.nan), fix_lon=(np.float64, np.nan),
        speed=(np.float64, np.nan), stopped=(np.bool_, False), stop_start=(np.int64, NO_TS),
        dwell_ms=(np.int64, 0), stops=(np.int32, 0), depart=(np.int64, NO_TS),
        start_km=(np.float64, np.nan),  # remaining distance at the trip's first sample
        last_at=(np.int64, NO_TS),  # time of the last sample (prediction)
        eta=(np.int64, NO_TS), late=(np.bool_, False))


@numba.njit(cache=True)
def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = (np.sin((p2 - p1) / 2) ** 2
         + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2)
    return 2.0 * EARTH_M * np.arcsin(np.sqrt(min(1.0, h)))


@jit.helper
def step_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The distance from a fix to the next (equirectangular: they are close)."""
    dx = (lon2 - lon1) * np.cos(np.radians(0.5 * (lat1 + lat2)))
    return EARTH_M * np.radians(np.sqrt(dx * dx + (lat2 - lat1) ** 2))


@jit.helper
def _snapshot(s: int, at: int, why: int, fix_ts: np.ndarray, fix_lat: np.ndarray,
              fix_lon: np.ndarray, speed: np.ndarray, stopped: np.ndarray,
              stop_start: np.ndarray, dwell: np.ndarray, stops: np.ndarray, depart: np.ndarray,
              n: int, out_ship: np.ndarray, out_at: np.ndarray, out_why: np.ndarray,
              out_f: np.ndarray) -> None:
    out_ship[n], out_at[n], out_why[n] = s, at, why
    stop_ms = float(at - stop_start[s]) if stopped[s] else 0.0
    out_f[n, 0], out_f[n, 1], out_f[n, 2] = fix_ts[s], fix_lat[s], fix_lon[s]
    out_f[n, 3], out_f[n, 4], out_f[n, 5] = speed[s], 1.0 if stopped[s] else 0.0, stop_ms
    out_f[n, 6], out_f[n, 7], out_f[n, 8] = dwell[s] + stop_ms, stops[s], depart[s]


@numba.njit(cache=True)
def track_trips(kind: np.ndarray, ship: np.ndarray, ts: np.ndarray, lat: np.ndarray,
                lon: np.ndarray, in_transit: np.ndarray, dest_lat: np.ndarray,
                fix_ts: np.ndarray, fix_lat: np.ndarray, fix_lon: np.ndarray,
                speed: np.ndarray, stopped: np.ndarray, stop_start: np.ndarray,
                dwell: np.ndarray, stops: np.ndarray, depart: np.ndarray, last_at: np.ndarray,
                interval: int, start: int, out_ship: np.ndarray, out_at: np.ndarray,
                out_why: np.ndarray, out_f: np.ndarray) -> tuple[int, int]:
    """Update the trips of in-transit shipments with a destination from GPS rows `start..`
    (event-time order) and write samples; returns (samples written, next row). Stops early,
    before a row it has not applied, when the output (`len(out_ship)` samples, at least 2)
    is full: called again from that row, it carries on where it stopped."""
    cap = len(out_ship)
    n = 0
    alpha, alpha_dt = 0.0, -1  # the recent speed's weight of a fix `alpha_dt` after the last
    for i in range(start, len(ts)):
        if n + 2 > cap:
            return n, i
        s = ship[i]
        if kind[i] != GPS or s < 0 or not in_transit[s] or np.isnan(dest_lat[s]):
            continue
        t = ts[i]
        if fix_ts[s] == NO_TS:  # the trip's first fix
            fix_ts[s], fix_lat[s], fix_lon[s], speed[s] = t, lat[i], lon[i], np.nan
            if depart[s] == NO_TS:
                depart[s] = t
            _snapshot(s, t, FIRST, fix_ts, fix_lat, fix_lon, speed, stopped, stop_start,
                      dwell, stops, depart, n, out_ship, out_at, out_why, out_f)
            last_at[s] = t
            n += 1
            continue
        dt = t - fix_ts[s]
        if dt <= 0:
            continue
        while last_at[s] != NO_TS and last_at[s] + interval <= t:
            if n + 2 > cap:
                return n, i
            last_at[s] += interval  # due: at exactly that time, with what was known then
            _snapshot(s, last_at[s], DUE, fix_ts, fix_lat, fix_lon, speed, stopped,
                      stop_start, dwell, stops, depart, n, out_ship, out_at, out_why, out_f)
            n += 1
        kmh = step_m(fix_lat[s], fix_lon[s], lat[i], lon[i]) / dt * 3_600.0
        if kmh > OUTLIER_KMH:
            continue
        if dt != alpha_dt:  # (fixes mostly come at one interval)
            alpha, alpha_dt = 1.0 - np.exp(-dt / SPEED_TAU_MS), dt
        speed[s] = kmh if np.isnan(speed[s]) else speed[s] + alpha * (kmh - speed[s])
        why = -1
        if not stopped[s] and kmh < STOP_KMH:
            stopped[s], stop_start[s] = True, fix_ts[s]
            stops[s] += 1
            why = STOP_STARTED
        elif stopped[s] and kmh > MOVE_KMH:
            stopped[s] = False
            dwell[s] += fix_ts[s] - stop_start[s]
            why = STOP_ENDED
        fix_ts[s], fix_lat[s], fix_lon[s] = t, lat[i], lon[i]
        if why >= 0:
            _snapshot(s, t, why, fix_ts, fix_lat, fix_lon, speed, stopped, stop_start, dwell,
                      stops, depart, n, out_ship, out_at, out_why, out_f)
            last_at[s] = t
            n += 1
    return n, len(ts)


def snapshot_now(trip: Columns, ships: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Snapshots (rows of SNAPSHOT) of these trips as they stand, taken at `at`."""
    stop_ms = np.where(trip.stopped[ships], at - trip.stop_start[ships], 0).astype(np.float64)
    return np.column_stack([
        trip.fix_ts[ships], trip.fix_lat[ships], trip.fix_lon[ships], trip.speed[ships],
        trip.stopped[ships], stop_ms, trip.dwell_ms[ships] + stop_ms, trip.stops[ships],
        trip.depart[ships]]).astype(np.float64)


@numba.njit(cache=True)
def remaining_m(lat: np.ndarray, lon: np.ndarray, dest_lat: np.ndarray, dest_lon: np.ndarray,
                line: np.ndarray, line_lat: np.ndarray, line_lon: np.ndarray,
                line_cum: np.ndarray, line_start: np.ndarray, line_count: np.ndarray
                ) -> np.ndarray:
    """Distance left to the destination: along the trip's corridor (`line[j]` >= 0, a line
    of the table) from the point of it nearest the position, toward the end nearer the
    destination; the great-circle distance otherwise."""
    out = np.empty(len(lat))
    for j in range(len(lat)):
        k = line[j]
        if k < 0:
            out[j] = haversine_m(lat[j], lon[j], dest_lat[j], dest_lon[j])
            continue
        a, m = line_start[k], line_count[k]
        kx = np.cos(np.radians(lat[j])) * EARTH_M * np.pi / 180.0
        ky = EARTH_M * np.pi / 180.0
        best, along = np.inf, 0.0
        for v in range(a, a + m - 1):
            x0, y0 = (line_lon[v] - lon[j]) * kx, (line_lat[v] - lat[j]) * ky
            dx, dy = (line_lon[v + 1] - line_lon[v]) * kx, (line_lat[v + 1] - line_lat[v]) * ky
            seg2 = dx * dx + dy * dy
            u = 0.0 if seg2 == 0 else min(1.0, max(0.0, -(x0 * dx + y0 * dy) / seg2))
            px, py = x0 + u * dx, y0 + u * dy
            d2 = px * px + py * py
            if d2 < best:
                best, along = d2, line_cum[v] + u * (line_cum[v + 1] - line_cum[v])
        total = line_cum[a + m - 1]
        to_first = haversine_m(line_lat[a], line_lon[a], dest_lat[j], dest_lon[j])
        to_last = haversine_m(line_lat[a + m - 1], line_lon[a + m - 1], dest_lat[j],
                              dest_lon[j])
        out[j] = along if to_first < to_last else total - along
    return out
