"""Dense, overlapping polygon fences for the benchmarks (the held-out shape of issue 18):
jagged polygons (4-150 vertices, 300 m to 14 km), 60% of them clustered around 40 towns so they
overlap heavily, 30% with 1-3 holes, 15% multipolygons of 2-4 parts, all over BOX (10 x 10
degrees around Germany), and one fence split at the antimeridian (RFC 7946 style) into a
multipolygon. Deterministic for a given random generator."""

import numpy as np
import shapely
from shapely import affinity

BOX = (5.0, 45.0, 15.0, 55.0)  # lon_min, lat_min, lon_max, lat_max
M_PER_DEG_LAT = 110_574.0


def offset(lon0: float, lat0: float, metres: np.ndarray, ang: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Points `metres` away from (lon0, lat0) in directions `ang` (local flat approximation)."""
    return (lon0 + metres * np.cos(ang) / (111_320 * np.cos(np.radians(lat0))),
            lat0 + metres * np.sin(ang) / M_PER_DEG_LAT)


def jagged_ring(rng: np.random.Generator, lon0: float, lat0: float, radius: float, k: int
                ) -> np.ndarray:
    """A closed simple ring of k vertices: angular gaps under pi, radius a random walk plus a
    few harmonics, between 0.6 and 1.6 times `radius`."""
    ang = (np.arange(k) + rng.uniform(0, 0.9, k)) * (2 * np.pi / k)
    walk = np.cumsum(rng.normal(0, 0.08, k))
    walk -= np.linspace(0, walk[-1], k)  # ends where it started
    h = np.arange(1, 4)[:, None]
    wave = (rng.uniform(0, 0.25 / h) * np.cos(h * ang + rng.uniform(0, 2 * np.pi, (3, 1)))).sum(0)
    lon, lat = offset(lon0, lat0, radius * np.clip(np.exp(walk) * (1 + wave), 0.6, 1.6), ang)
    return np.column_stack([np.append(lon, lon[0]), np.append(lat, lat[0])])


def jagged_polygon(rng: np.random.Generator, lon0: float, lat0: float, radius: float
                   ) -> shapely.Polygon:
    """4-150 vertices (log-uniform); 30% get 1-3 holes (those that would overlap are left out)."""
    shell = jagged_ring(rng, lon0, lat0, radius, int(np.exp(rng.uniform(np.log(4), np.log(150)))))
    holes: list[np.ndarray] = []
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            c = offset(lon0, lat0, rng.uniform(0, 0.3) * radius, rng.uniform(0, 2 * np.pi))
            hole = jagged_ring(rng, *c, rng.uniform(0.05, 0.2) * radius, int(rng.integers(5, 40)))
            if shapely.Polygon(shell, [*holes, hole]).is_valid:
                holes.append(hole)
    return shapely.Polygon(shell, holes)


def dense_fences(n: int, rng: np.random.Generator) -> list[shapely.Geometry]:
    """n - 1 overlapping fences over BOX and one split at the antimeridian (see the top)."""
    towns = rng.uniform(BOX[:2], BOX[2:], (40, 2))
    geoms: list[shapely.Geometry] = []
    while len(geoms) < n - 1:
        if rng.random() < 0.6:
            lon0, lat0 = towns[rng.integers(len(towns))] + rng.normal(0, 0.3, 2)
        else:
            lon0, lat0 = rng.uniform(BOX[:2], BOX[2:])
        radius = np.exp(rng.uniform(np.log(300), np.log(14_000)))
        parts = [jagged_polygon(rng, lon0, lat0, radius)]
        if rng.random() < 0.15:
            for _ in range(int(rng.integers(1, 4))):
                c = offset(lon0, lat0, rng.uniform(1.5, 4) * radius, rng.uniform(0, 2 * np.pi))
                part = jagged_polygon(rng, *c, radius * rng.uniform(0.3, 1))
                if not any(part.intersects(q) for q in parts):
                    parts.append(part)
        geom = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
        if geom.is_valid:
            geoms.append(geom)
    whole = jagged_polygon(rng, 180.0, -17.5, 60_000)
    west = shapely.intersection(whole, shapely.box(170, -90, 180, 90))
    east = affinity.translate(shapely.intersection(whole, shapely.box(180, -90, 190, 90)), -360)
    geoms.append(shapely.MultiPolygon([*shapely.get_parts(west), *shapely.get_parts(east)]))
    return geoms
