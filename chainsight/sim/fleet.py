"""Who ships what where and when: shipments, their timelines and their trucks' drives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainsight.geofence.geodesy import geodesic_m

from .scenario import Scenario
from .trucks import Drives, dock_busyness, fleet_drive, time_at_distance
from .world import Route, Site, World, build_world

MIN = 60_000


def rng_for(seed: int, *path: int) -> np.random.Generator:
    """Independent, reproducible random stream for one purpose."""
    return np.random.Generator(np.random.PCG64([seed, *path]))


@dataclass
class Fleet:
    """All shipments of a scenario (index i = shipment number i+1) and their true timelines."""

    scn: Scenario
    world: World
    n: int
    origin: np.ndarray  # site index of the origin hub
    dest: np.ndarray  # site index of the destination
    profiles: list[str]
    cancelled: np.ndarray
    routes: list[Route]
    live: np.ndarray  # indices of shipments that are not cancelled
    drives: Drives | None  # kinematics of the live shipments (in ``live`` order)
    tl: dict[str, np.ndarray]  # event-time timeline (epoch ms) per shipment
    weight: np.ndarray
    dock_o: np.ndarray  # (n, 2) metres north/east of the origin hub centre
    dock_d: np.ndarray  # (n, 2) metres north/east of the destination centre
    misc_latency: np.ndarray  # (n, 12) ms, business events
    lot_suffix: np.ndarray
    cert_id: np.ndarray
    shp: list[str]  # ids, index = shipment number (1-based; [0] unused)
    trk: list[str]
    rfr: list[str]
    id_digits: int


def _u(rng: np.random.Generator, lo: float, hi: float, size: int | tuple[int, ...]) -> np.ndarray:
    return rng.uniform(lo, hi, size)


def fence_entry_m(route: Route, site: Site) -> float:
    """Distance along the route where it first enters the destination circle."""
    dd = np.linspace(max(0.0, route.length_m - 4 * site.radius_m), route.length_m, 400)
    la = np.interp(dd, route.cum_m, route.lat)
    lo = np.interp(dd, route.cum_m, route.lon)
    inside = np.flatnonzero(geodesic_m(lo, la, site.lon, site.lat) <= site.radius_m)
    return float(dd[inside[0]]) if inside.size else route.length_m


def plan_fleet(scn: Scenario) -> Fleet:
    """Place the world, draw every shipment's route, profile and timeline, drive the trucks."""
    seed, n = scn.seed, scn.shipments
    world = build_world(scn, rng_for(seed, 1))
    rng = rng_for(seed, 2)
    start, span = scn.start_ms, scn.duration_ms

    dest_by: dict[tuple[int, str], list[int]] = {}
    for (o, d) in world.routes:
        dest_by.setdefault((o, world.sites[d].kind), []).append(d)
    created = start + np.sort(_u(rng, 0, scn.release_span * span, n)).astype(np.int64)
    origin = rng.integers(0, scn.hubs, n)
    kinds = list(scn.destination_mix)
    kp = np.array([scn.destination_mix[k] for k in kinds], dtype=float)
    kind_draw = rng.choice(len(kinds), n, p=kp / kp.sum())
    pnames = list(scn.profile_mix)
    pp = np.array([scn.profile_mix[k] for k in pnames], dtype=float)
    prof_draw = rng.choice(len(pnames), n, p=pp / pp.sum())
    cold_frozen = rng.random(n) < 0.6
    pick = rng.random(n)
    dest = np.zeros(n, dtype=np.int64)
    profiles: list[str] = []
    for i in range(n):
        o, kind = int(origin[i]), kinds[kind_draw[i]]
        opts = dest_by.get((o, kind)) or dest_by.get((o, "customer")) or dest_by[(o, "hub")]
        dest[i] = opts[int(pick[i] * len(opts))]
        if world.sites[dest[i]].kind == "cold_store":
            profiles.append("frozen" if cold_frozen[i] else "pharma_2_8")
        else:
            profiles.append(pnames[prof_draw[i]])
    cancelled = rng.random(n) < scn.cancel_rate

    def step(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return t + (_u(rng, lo, hi, n) * MIN).astype(np.int64)

    tl: dict[str, np.ndarray] = {"created": created}
    tl["allocated"] = step(created, 0.5, 3)
    tl["received"] = step(tl["allocated"], 1, 4)
    tl["put_away"] = step(tl["received"], 1, 4)
    tl["picked"] = step(tl["put_away"], 1, 5)
    tl["packed"] = step(tl["picked"], 1, 4)
    tl["loaded"] = step(tl["packed"], 1, 4)
    tl["truck_in"] = np.maximum(tl["loaded"] - (_u(rng, 4, 15, n) * MIN).astype(np.int64),
                                tl["allocated"] + 30_000)
    tl["shipped"] = step(tl["loaded"], 2, 8)  # departure
    tl["in_transit"] = tl["shipped"] + (_u(rng, 30, 120, n) * 1000).astype(np.int64)
    tl["cancelled"] = step(tl["allocated"], 2, 20)
    weight = np.round(_u(rng, 200, 22_000, n), 1)
    dock_o = _u(rng, -150, 150, (n, 2))
    dock_frac = _u(rng, 0.05, 0.3, n)
    dock_brg = _u(rng, 0, 2 * np.pi, n)
    unload_after = (_u(rng, 2, 6, n) * MIN).astype(np.int64)
    # unloading: the reefer door is open for 1-2.5 min and the logger reports at least once
    # with the door closed before the delivered scan ends its stream
    unload_door = (_u(rng, 60, 150, n) * 1000).astype(np.int64)
    deliver_after = unload_door + (np.maximum(60.0, 1.5 * scn.sensor_interval_s)
                                   * 1000 + _u(rng, 0, 2, n) * MIN).astype(np.int64)
    order_deliv_after = (_u(rng, 5, 60, n) * 1000).astype(np.int64)
    gps_tail = (_u(rng, 1, 3, n) * MIN).astype(np.int64)
    slack = _u(rng, 0.95, 1.5, n)
    misc_latency = rng.integers(100, 2000, (n, 12))
    lot_suffix = rng.integers(0, 10**6, n)
    cert_id = rng.integers(10**5, 10**6, (n, 2))

    routes = [world.routes[(int(origin[i]), int(dest[i]))] for i in range(n)]
    live = np.flatnonzero(~cancelled)
    depart = tl["shipped"]
    drv = fleet_drive([routes[i] for i in live], depart[live], rng_for(seed, 3)) \
        if live.size else None
    arrive = np.zeros(n, dtype=np.int64)
    fence_in = np.zeros(n, dtype=np.int64)
    if drv is not None:
        arrive[live] = depart[live] + drv.duration_ms
        d_enter: dict[str, float] = {}
        for i in live.tolist():
            if routes[i].route_id not in d_enter:
                d_enter[routes[i].route_id] = fence_entry_m(routes[i], world.sites[int(dest[i])])
        d_in = np.array([d_enter[routes[i].route_id] for i in live])
        fence_in[live] = depart[live] + time_at_distance(drv, d_in)
    tl["arrive"] = arrive
    tl["fence_in"] = fence_in
    lo, hi = scn.dock_wait_min
    if hi > 0:  # its own random stream: scenarios without a wait draw exactly as before
        at_hub = np.array([world.sites[int(d)].kind == "hub" for d in dest])
        wait = _u(rng_for(seed, 8), lo, hi, n) * dock_busyness(arrive) * np.where(at_hub, 1.5,
                                                                                1.0)
        unload_after = unload_after + (wait * MIN).astype(np.int64)
    tl["unloaded"] = arrive + unload_after
    tl["unload_door_closed"] = tl["unloaded"] + unload_door
    tl["delivered"] = tl["unloaded"] + deliver_after
    tl["order_delivered"] = tl["delivered"] + order_deliv_after
    tl["gps_end"] = tl["delivered"] + gps_tail
    route_len = np.array([r.length_m for r in routes])
    nominal = (tl["loaded"] - created) + 6 * MIN + route_len / (55 / 3.6) * 1000 + 8 * MIN
    tl["promised"] = created + np.ceil(nominal * slack / (5 * MIN)).astype(np.int64) * 5 * MIN

    r_d = dock_frac * np.array([world.sites[int(d)].radius_m for d in dest])
    dock_d = np.stack([r_d * np.cos(dock_brg), r_d * np.sin(dock_brg)], axis=1)
    w = max(6, len(str(n)))
    return Fleet(
        scn, world, n, origin, dest, profiles, cancelled, routes, live, drv, tl, weight,
        dock_o, dock_d, misc_latency, lot_suffix, cert_id,
        [""] + [f"SHP-{i:0{w}d}" for i in range(1, n + 1)],
        [""] + [f"TRK-{i:0{w}d}" for i in range(1, n + 1)],
        [""] + [f"RFR-{i:0{w}d}" for i in range(1, n + 1)],
        w,
    )
