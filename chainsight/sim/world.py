"""The simulated network: hubs, customers, cold stores and road-like routes between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chainsight.geofence.geodesy import geodesic_m

from .geo import M_PER_DEG, bearing_deg, offset
from .scenario import Scenario

# Real logistics locations around the Netherlands / Belgium / western Germany (lat, lon).
HUB_SITES: list[tuple[str, float, float]] = [
    ("Rotterdam Waalhaven", 51.8850, 4.4400),
    ("Venlo Trade Port", 51.3950, 6.1150),
    ("Antwerp Port", 51.2650, 4.3750),
    ("Duisburg logport", 51.3850, 6.7000),
    ("Utrecht Nieuwegein", 52.0450, 5.1000),
    ("Liege Trilogiport", 50.7050, 5.6600),
    ("Eindhoven Acht", 51.4800, 5.4200),
    ("Cologne Eifeltor", 50.9000, 6.9200),
    ("Tilburg Vossenberg", 51.5900, 5.0200),
    ("Amsterdam Schiphol", 52.3000, 4.7600),
    ("Brussels Vilvoorde", 50.9250, 4.4300),
    ("Ghent Port", 51.1000, 3.7700),
    ("Nijmegen Pegasus", 51.8300, 5.8300),
    ("Dortmund Westfalenhafen", 51.5300, 7.4400),
    ("Zwolle Hessenpoort", 52.5000, 6.0900),
    ("Dusseldorf Reisholz", 51.1900, 6.8500),
    ("Aachen Eilendorf", 50.7900, 6.1100),
    ("Arnhem Kleefse Waard", 51.9800, 5.9400),
]

URBAN_M = 2500.0  # first/last stretch of every route is urban


@dataclass
class Site:
    """A hub, customer or cold store; also a circular geofence."""

    site_id: str
    name: str
    kind: str
    lat: float
    lon: float
    radius_m: float
    home_hub: int  # index of the hub serving it (itself for hubs)


@dataclass
class Route:
    """A drivable polyline from origin site to destination site."""

    route_id: str
    corridor_id: str
    origin: int
    dest: int
    lat: np.ndarray
    lon: np.ndarray
    cum_m: np.ndarray  # cumulative distance at each vertex
    bearing: np.ndarray  # per segment
    limit_kmh: np.ndarray  # per segment (free-flow truck speed)

    @property
    def length_m(self) -> float:
        """Route length in metres."""
        return float(self.cum_m[-1])


@dataclass
class World:
    """Sites and routes of one simulation."""

    sites: list[Site]
    hubs: list[int]
    routes: dict[tuple[int, int], Route]
    corridors: dict[str, tuple[np.ndarray, np.ndarray, str]] = field(default_factory=dict)
    corridor_width_m: float = 300.0
    hub_dwell_max_min: float = 120.0

    def fences(self) -> dict[str, Any]:
        """GeoJSON FeatureCollection in the contract's geofence format."""
        feats: list[dict[str, Any]] = []
        for s in self.sites:
            props: dict[str, Any] = {"fence_id": s.site_id, "name": s.name, "kind": s.kind,
                                     "radius_m": s.radius_m}
            if s.kind == "hub":
                props["dwell_max_min"] = self.hub_dwell_max_min
            feats.append({"type": "Feature",
                          "geometry": {"type": "Point",
                                       "coordinates": [round(s.lon, 6), round(s.lat, 6)]},
                          "properties": props})
        for cid, (lat, lon, name) in self.corridors.items():
            coords = np.round(np.stack([lon, lat], axis=1), 6).tolist()
            feats.append({"type": "Feature",
                          "geometry": {"type": "LineString", "coordinates": coords},
                          "properties": {"fence_id": cid, "name": name, "kind": "corridor",
                                         "width_m": self.corridor_width_m}})
        return {"type": "FeatureCollection", "features": feats}


def road_polyline(lat_a: float, lon_a: float, lat_b: float, lon_b: float,
                  rng: np.random.Generator, spacing_m: float = 600.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A road-like polyline from A to B: smooth random bends plus small wiggles, exact ends."""
    dist = float(geodesic_m(lon_a, lat_a, lon_b, lat_b))
    n = max(8, int(dist / spacing_m)) + 1
    s = np.linspace(0.0, 1.0, n)
    lat0 = (lat_a + lat_b) / 2
    ky, kx = M_PER_DEG, M_PER_DEG * np.cos(np.radians(lat0))
    dy, dx = (lat_b - lat_a) * ky, (lon_b - lon_a) * kx
    norm = float(np.hypot(dx, dy)) or 1.0
    ux, uy = dx / norm, dy / norm
    px, py = -uy, ux
    off = rng.choice([-1.0, 1.0]) * rng.uniform(0.06, 0.14) * dist * np.sin(np.pi * s)
    for k in range(2, 7):  # bends on several scales
        off += rng.normal(0.0, 0.035 * dist / k**0.7) * np.sin(k * np.pi * s)
    wig = np.cumsum(rng.normal(0.0, 25.0, n))
    wig -= wig[0] + (wig[-1] - wig[0]) * s  # pin both ends
    off += wig
    x = s * dx + off * px
    y = s * dy + off * py
    return lat_a + y / ky, lon_a + x / kx


def _make_route(route_id: str, corridor_id: str, o: int, d: int,
                lat: np.ndarray, lon: np.ndarray, rng: np.random.Generator) -> Route:
    seg = geodesic_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    brg = bearing_deg(lat[:-1], lon[:-1], lat[1:], lon[1:])
    length = cum[-1]
    mid = (cum[:-1] + cum[1:]) / 2
    open_road = 85.0 if length > 40_000 else 70.0
    limit = np.where((mid < URBAN_M) | (mid > length - URBAN_M), 45.0, open_road)
    sections = (mid // 5000).astype(int)
    factors = rng.uniform(0.9, 1.05, sections.max() + 1)
    return Route(route_id, corridor_id, o, d, lat, lon, cum, brg, limit * factors[sections])


def _reverse(r: Route, route_id: str) -> Route:
    lat, lon = r.lat[::-1].copy(), r.lon[::-1].copy()
    cum = r.length_m - r.cum_m[::-1]
    brg = bearing_deg(lat[:-1], lon[:-1], lat[1:], lon[1:])
    return Route(route_id, r.corridor_id, r.dest, r.origin, lat, lon, cum, brg,
                 r.limit_kmh[::-1].copy())


def build_world(scn: Scenario, rng: np.random.Generator) -> World:
    """Place hubs, customers and cold stores and build one route per served destination."""
    sites: list[Site] = []
    for i in range(scn.hubs):
        if i < len(HUB_SITES):
            name, lat, lon = HUB_SITES[i]
        else:
            name = f"Hub {i + 1}"
            for _ in range(200):
                lat, lon = rng.uniform(50.75, 52.3), rng.uniform(4.0, 7.2)
                if all(geodesic_m(lon, lat, s.lon, s.lat) > 15_000 for s in sites):
                    break
        sites.append(Site(f"HUB-{i + 1:02d}", f"Hub {name}", "hub", float(lat), float(lon),
                          scn.hub_radius_m, i))
    hubs = list(range(scn.hubs))
    hlat = np.array([s.lat for s in sites])
    hlon = np.array([s.lon for s in sites])
    hub_dist = geodesic_m(hlon[:, None], hlat[:, None], hlon[None, :], hlat[None, :])
    np.fill_diagonal(hub_dist, np.inf)
    nearest = np.argsort(hub_dist, axis=1)

    def place(h: int, dmin: float, dmax: float) -> tuple[float, float]:
        nb = int(nearest[h, rng.integers(0, min(3, scn.hubs - 1))])
        brg = bearing_deg(hlat[h], hlon[h], hlat[nb], hlon[nb]) + rng.normal(0, 40)
        dist = rng.uniform(dmin, max(dmin + 1000, min(dmax, 0.6 * hub_dist[h, nb])))
        la, lo = offset(hlat[h], hlon[h], dist * np.cos(np.radians(brg)),
                        dist * np.sin(np.radians(brg)))
        return float(la), float(lo)

    for i in range(scn.customers):
        h = i % scn.hubs
        la, lo = place(h, 6_000, 40_000)
        sites.append(Site(f"CUS-{i + 1:03d}", f"Customer {i + 1:03d} ({sites[h].name[4:]})",
                          "customer", la, lo, scn.customer_radius_m, h))
    for i in range(scn.cold_stores):
        h = i % scn.hubs
        la, lo = place(h, 3_000, 20_000)
        sites.append(Site(f"CST-{i + 1:02d}", f"Cold store {i + 1:02d} ({sites[h].name[4:]})",
                          "cold_store", la, lo, scn.cold_store_radius_m, h))

    world = World(sites, hubs, {}, {}, scn.corridor_width_m, scn.hub_dwell_max_min)
    for d, s in enumerate(sites):
        if s.kind == "hub":
            continue
        o = sites[s.home_hub]
        lat, lon = road_polyline(o.lat, o.lon, s.lat, s.lon, rng)
        cid = f"COR-{o.site_id}-{s.site_id}"
        world.routes[(s.home_hub, d)] = _make_route(f"RT-{o.site_id}-{s.site_id}", cid,
                                                    s.home_hub, d, lat, lon, rng)
        world.corridors[cid] = (lat, lon, f"Route {o.name[4:]} - {s.name}")
    pairs = sorted({(min(h, int(n)), max(h, int(n))) for h in hubs
                    for n in nearest[h, : min(2, scn.hubs - 1)]})
    for a, b in pairs:
        sa, sb = sites[a], sites[b]
        lat, lon = road_polyline(sa.lat, sa.lon, sb.lat, sb.lon, rng, spacing_m=900.0)
        cid = f"COR-{sa.site_id}-{sb.site_id}"
        r = _make_route(f"RT-{sa.site_id}-{sb.site_id}", cid, a, b, lat, lon, rng)
        world.routes[(a, b)] = r
        world.routes[(b, a)] = _reverse(r, f"RT-{sb.site_id}-{sa.site_id}")
        world.corridors[cid] = (lat, lon, f"Trunk {sa.name[4:]} - {sb.name[4:]}")
    return world
