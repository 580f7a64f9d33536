"""Truck kinematics along routes and the GPS fixes trackers report (vectorised over the fleet)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .geo import offset
from .world import URBAN_M, Route

LOCAL_UTC_OFFSET_H = 1.0  # CET: traffic follows local time
_BIG_D = 1e7  # metres between trips on a global distance axis (> any route)
_BIG_T = 4e8  # ms between trips on a global time axis (> any trip)


class Drives(NamedTuple):
    """Piecewise-linear distance-vs-time of many trips (relative to each departure).

    Nodes of trip j are ``offs[j] : offs[j] + count[j]``; times are non-decreasing within a trip.
    """

    owner: np.ndarray  # trip index per node
    t_ms: np.ndarray  # ms after departure (float)
    d_m: np.ndarray  # metres along the route
    offs: np.ndarray
    count: np.ndarray

    @property
    def duration_ms(self) -> np.ndarray:
        """Departure-to-arrival driving time per trip (int ms)."""
        return np.rint(self.t_ms[self.offs + self.count - 1]).astype(np.int64)


class Track(NamedTuple):
    """Reported GPS values, scaled integers ready for encoding."""

    lat_e6: np.ndarray
    lon_e6: np.ndarray
    speed_e1: np.ndarray
    heading_e1: np.ndarray
    accuracy_e1: np.ndarray


def traffic_factor(ms: np.ndarray) -> np.ndarray:
    """Speed multiplier for the local time of day (morning/evening rush, quiet nights)."""
    h = (np.asarray(ms) / 3_600_000 + LOCAL_UTC_OFFSET_H) % 24
    f = 1.0 - 0.32 * np.exp(-(((h - 8.0) / 1.1) ** 2)) - 0.28 * np.exp(-(((h - 17.3) / 1.2) ** 2))
    return f + np.where((h < 5) | (h > 22), 0.05, 0.0)


def dock_busyness(ms: np.ndarray) -> np.ndarray:
    """How busy destination docks are at the local time of day (0.2 at night, 1 late
    morning)."""
    h = (np.asarray(ms) / 3_600_000 + LOCAL_UTC_OFFSET_H) % 24
    return 0.2 + 0.8 * np.exp(-(((h - 11.0) / 3.5) ** 2))


def expand(first: np.ndarray, stop: np.ndarray, step: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Regular times ``first[j] + k*step < stop[j]`` for every j, concatenated.

    Returns (owner j per time, times, block offset per j, block length per j).
    """
    c = np.maximum(0, -(-(stop - first) // step)).astype(np.int64)
    owner = np.repeat(np.arange(first.size), c)
    offs = np.cumsum(c) - c
    k = np.arange(int(c.sum()), dtype=np.int64) - offs[owner]
    return owner, first[owner] + k * step, offs, c


def _group_cumsum(x: np.ndarray, owner: np.ndarray, m: int) -> np.ndarray:
    """Cumulative sum restarting at each owner (x sorted by owner)."""
    cs = np.cumsum(x)
    totals = np.zeros(m)
    np.add.at(totals, owner, x)
    before = np.cumsum(totals) - totals
    return cs - before[owner]


def fleet_drive(routes: list[Route], depart_ms: np.ndarray, rng: np.random.Generator) -> Drives:
    """Kinematics of many trips: per-segment speed = free-flow limit x time-of-day traffic x
    noise (sometimes a jam of 1-4 km at 10-30 km/h), plus stops (lights near both ends,
    a few on the open road, rarely a long one)."""
    m = len(routes)
    nv = np.array([r.cum_m.size for r in routes])
    v_owner = np.repeat(np.arange(m), nv)
    cum = np.concatenate([r.cum_m for r in routes])
    limit = np.concatenate([np.append(r.limit_kmh, 1.0) for r in routes])  # pad: last vertex
    length = np.array([r.length_m for r in routes])
    # per-segment (stored at its start vertex; the last vertex of a trip has no segment)
    seg = np.diff(cum, append=0.0)
    last_v = np.cumsum(nv) - 1
    seg[last_v] = 0.0
    v = limit / 3.6 * (traffic_factor(depart_ms) * rng.uniform(0.9, 1.05, m))[v_owner]
    v = v * rng.uniform(0.93, 1.05, cum.size)
    jam = (length > 8000) & (rng.random(m) < 0.3)
    a = rng.uniform(URBAN_M, np.maximum(URBAN_M + 1, length - URBAN_M - 4000))
    jam_end = a + rng.uniform(1000, 4000, m)
    jam_v = rng.uniform(10, 30, m) / 3.6
    nxt = cum + seg
    in_jam = jam[v_owner] & (nxt > a[v_owner]) & (cum < jam_end[v_owner])
    v = np.where(in_jam, np.minimum(v, jam_v[v_owner]), v)
    dt = seg / v
    t_vert = _group_cumsum(dt, v_owner, m) - dt  # time reaching each vertex (s)
    # stops
    n_urban = rng.poisson(2.0, m)
    n_road = rng.poisson(length / 25_000)
    u_own = np.repeat(np.arange(m), n_urban)
    r_own = np.repeat(np.arange(m), n_road)
    half = np.minimum(URBAN_M, length / 2)
    urb = rng.uniform(0, 2 * half[u_own])
    urb = np.where(urb < half[u_own], urb, length[u_own] - (urb - half[u_own]))
    road = rng.uniform(0, length[r_own])
    long = rng.random(r_own.size) < 0.15
    s_own = np.concatenate([u_own, r_own])
    ds = np.clip(np.concatenate([urb, road]), 1.0, length[s_own] - 1.0)
    dur = np.concatenate([rng.uniform(15, 75, u_own.size),
                          np.where(long, rng.uniform(180, 600, r_own.size),
                                   rng.uniform(20, 120, r_own.size))])
    o = np.lexsort((ds, s_own))
    s_own, ds, dur = s_own[o], ds[o], dur[o]
    cs = np.concatenate([[0.0], np.cumsum(dur)])
    first_stop = np.searchsorted(s_own, np.arange(m), side="left")
    key_s = s_own * _BIG_D + ds
    key_v = v_owner * _BIG_D + cum
    before_v = np.searchsorted(key_s, key_v, side="left")
    t_vertex = t_vert + cs[before_v] - cs[first_stop[v_owner]]
    t_in = np.interp(key_s, key_v, t_vert) + cs[:-1] - cs[first_stop[s_own]]
    t_out = t_in + dur
    owner = np.concatenate([v_owner, s_own, s_own])
    d = np.concatenate([cum, ds, ds])
    t = np.concatenate([t_vertex, t_in, t_out]) * 1000.0
    o = np.lexsort((t, d, owner))
    owner, d, t = owner[o], d[o], t[o]
    count = np.bincount(owner, minlength=m)
    offs = np.cumsum(count) - count
    return Drives(owner, t, d, offs, count)


def time_at_distance(dr: Drives, d_m: np.ndarray) -> np.ndarray:
    """First time (ms after departure) each trip reaches distance ``d_m[j]``."""
    key_n = dr.owner * _BIG_D + dr.d_m
    j = np.arange(dr.count.size)
    i = np.searchsorted(key_n, j * _BIG_D + d_m, side="left")
    i = np.clip(i, dr.offs + 1, dr.offs + dr.count - 1)
    d0, d1 = dr.d_m[i - 1], dr.d_m[i]
    t0, t1 = dr.t_ms[i - 1], dr.t_ms[i]
    frac = np.where(d1 > d0, (d_m - d0) / np.where(d1 > d0, d1 - d0, 1.0), 1.0)
    return np.rint(t0 + (t1 - t0) * np.clip(frac, 0.0, 1.0)).astype(np.int64)


def fleet_gps(routes: list[Route], dr: Drives, owner: np.ndarray, t_ms: np.ndarray,
              depart_ms: np.ndarray, dock_o: np.ndarray, dock_d: np.ndarray,
              accuracy_m: float, rng: np.random.Generator) -> Track:
    """GPS values of many trucks (fixes of truck j: ``owner == j``, route ``routes[j]``).

    Before departure the truck stands at its origin dock, after arrival at its destination
    dock (``dock_*``: metres north/east of the site centre); in between it follows its drive.
    """
    t_nodes = dr.t_ms + dr.owner * _BIG_T
    last_node = dr.offs + dr.count - 1
    t_end = dr.t_ms[last_node]
    dtn = np.diff(t_nodes, append=t_nodes[-1] + 1)
    slope = np.diff(dr.d_m, append=dr.d_m[-1]) / np.where(dtn > 0, dtn, 1.0) * 3600.0
    slope[last_node] = 0.0
    # routes on a global distance axis
    slots: dict[str, int] = {}
    rlist: list[Route] = []
    for r in routes:
        if r.route_id not in slots:
            slots[r.route_id] = len(rlist)
            rlist.append(r)
    cum_g = np.concatenate([r.cum_m + k * _BIG_D for k, r in enumerate(rlist)])
    lat_g = np.concatenate([r.lat for r in rlist])
    lon_g = np.concatenate([r.lon for r in rlist])
    brg_g = np.concatenate([np.append(r.bearing, r.bearing[-1]) for r in rlist])
    route_slot = np.array([slots[r.route_id] for r in routes])

    rel = (t_ms - depart_ms[owner]).astype(np.float64)
    tg = np.clip(rel, 0.0, t_end[owner]) + owner * _BIG_T
    d = np.interp(tg, t_nodes, dr.d_m)
    dg = d + route_slot[owner] * _BIG_D
    lat = np.interp(dg, cum_g, lat_g)
    lon = np.interp(dg, cum_g, lon_g)
    heading = brg_g[np.clip(np.searchsorted(cum_g, dg, side="right") - 1, 0, cum_g.size - 1)]
    k = np.clip(np.searchsorted(t_nodes, tg, side="right") - 1, 0, t_nodes.size - 1)
    speed = slope[k]
    before, after = rel < 0, rel > t_end[owner]
    speed[before | after] = 0.0
    north = np.where(before, dock_o[owner, 0], np.where(after, dock_d[owner, 0], 0.0))
    east = np.where(before, dock_o[owner, 1], np.where(after, dock_d[owner, 1], 0.0))
    n = t_ms.size
    acc = np.clip(np.exp(rng.normal(np.log(accuracy_m), 0.35, n)), 1.5, 50.0)
    north += rng.normal(0.0, 1.0, n) * acc / 2
    east += rng.normal(0.0, 1.0, n) * acc / 2
    lat, lon = offset(lat, lon, north, east)
    moving = speed > 0.5
    speed = np.where(moving, np.maximum(speed + rng.normal(0, 1.2, n), 0.0),
                     np.abs(rng.normal(0, 0.4, n)))
    heading = (heading + rng.normal(0, 2.0, n)) % 360.0
    return Track(
        np.rint(lat * 1e6).astype(np.int64),
        np.rint(lon * 1e6).astype(np.int64),
        np.rint(speed * 10).astype(np.int64),
        np.rint(heading * 10).astype(np.int64) % 3600,
        np.rint(acc * 10).astype(np.int64),
    )
