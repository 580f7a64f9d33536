"""FenceSet.contains against shapely 2's STRtree on 1M points, on two sets of 1,000 fences.

Run: .venv/bin/python benchmarks/bench_geofence.py [--points N] [--fences N] [--seed S]
         [--set blobs|dense|both] [--runs N]
- blobs: random star-shaped polygons (20-200 vertices, 300 m to 20 km radius) over a
  country-sized box (10 x 10 degrees around Germany); points uniform over the same box.
- dense (the held-out shape of issue 18): jagged polygons (4-150 vertices, 300 m to 14 km),
  60% of them clustered around 40 towns so they overlap heavily, 30% with 1-3 holes, 15%
  multipolygons of 2-4 parts, and one fence split at the antimeridian (RFC 7946 style) into a
  multipolygon; 99% of the points are uniform over the box, 1% around the split fence.
Both print the pairs (which must be identical to shapely's), the best time of each and the
speed-up (target: >= 10x). Also prints the load time and peak memory of a long zig-zag corridor
(400 vertices between latitudes -80 and 80): memory must follow the vertices, not the length
of the line.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import shapely  # noqa: E402
from shapely import affinity  # noqa: E402

from chainsight.geofence import FenceSet  # noqa: E402

BOX = (5.0, 45.0, 15.0, 55.0)  # lon_min, lat_min, lon_max, lat_max
M_PER_DEG_LAT = 110_574.0
TARGET = 10.0  # speed-up over shapely


def random_fences(n: int, rng: np.random.Generator, spiky: bool) -> list[np.ndarray]:
    rings = []
    for _ in range(n):
        lon0, lat0 = rng.uniform(BOX[:2], BOX[2:])
        radius = np.exp(rng.uniform(np.log(300), np.log(20_000)))
        k = int(rng.integers(20, 201))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        if spiky:  # every vertex at a random radius: many edges cross any line
            r = radius * rng.uniform(0.5, 1.0, k)
        else:  # a smooth blob: a few random harmonics plus a little noise
            h = np.arange(1, 5)[:, None]
            wave = rng.uniform(0, 0.3 / h) * np.cos(h * ang + rng.uniform(0, 2 * np.pi, (4, 1)))
            r = radius * (1 + wave.sum(0) + rng.uniform(-0.02, 0.02, k))
        lon = lon0 + r * np.cos(ang) / (111_320 * np.cos(np.radians(lat0)))
        lat = lat0 + r * np.sin(ang) / 110_574
        rings.append(np.column_stack([np.append(lon, lon[0]), np.append(lat, lat[0])]))
    return rings


def zigzag_load() -> None:
    """Load time, tracemalloc peak and max-RSS growth of the zig-zag corridor."""
    n = 400
    lon = np.linspace(-170, 170, n)
    lat = np.where(np.arange(n) % 2 == 0, -80.0, 80.0)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"fence_id": "zz", "kind": "corridor", "width_m": 5000},
         "geometry": {"type": "LineString", "coordinates": np.column_stack([lon, lat]).tolist()}}]}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t = time.perf_counter()
    FenceSet.from_geojson(fc)
    took = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss  # KiB on Linux
    print(f"zig-zag corridor ({n} vertices): loaded in {took:.3f} s, tracemalloc peak "
          f"{peak / 1e6:.1f} MB, max RSS +{grew / 1024:.1f} MiB")


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


def dense_points(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """99% uniform over BOX, 1% around the fence split at the antimeridian."""
    lon, lat = rng.uniform(BOX[0], BOX[2], n), rng.uniform(BOX[1], BOX[3], n)
    k = n // 100
    lon[:k] = (rng.uniform(179, 181, k) + 180) % 360 - 180
    lat[:k] = rng.uniform(-18.5, -16.5, k)
    return lon, lat


def best_of(runs: int, fn: object) -> float:
    best = np.inf
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def compare(name: str, geoms: list[shapely.Geometry], lon: np.ndarray, lat: np.ndarray,
            runs: int) -> bool:
    """Print pairs, times and speed-up of FenceSet.contains over shapely; True if identical."""
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"fence_id": f"f{i}"},
         "geometry": shapely.geometry.mapping(g)} for i, g in enumerate(geoms)]}
    t = time.perf_counter()
    fences = FenceSet.from_geojson(fc)
    holes = int(shapely.get_num_interior_rings(shapely.get_parts(geoms)).sum())
    print(f"[{name}] {len(fences)} fences ({sum(g.geom_type == 'MultiPolygon' for g in geoms)} "
          f"multipolygons, {holes} holes, {int(shapely.get_num_coordinates(geoms).sum()):,} "
          f"vertices) loaded in {time.perf_counter() - t:.2f} s")
    fences.contains(lon[:1000], lat[:1000])  # JIT compile / load from cache
    ours = best_of(runs, lambda: fences.contains(lon, lat))
    pts, fen = fences.contains(lon, lat)
    points = shapely.points(lon, lat)
    theirs = best_of(runs, lambda: shapely.STRtree(geoms).query(points, predicate="intersects"))
    ref = shapely.STRtree(geoms).query(points, predicate="intersects")
    order = np.lexsort((ref[1], ref[0]))
    same = np.array_equal(ref[0][order], pts) and np.array_equal(ref[1][order], fen)
    print(f"[{name}] pairs: {pts.size:,} (shapely {ref.shape[1]:,}), identical: {same}")
    print(f"[{name}] FenceSet.contains: {ours:.4f} s = {lon.size / ours:,.0f} points/s "
          f"(best of {runs})")
    print(f"[{name}] shapely STRtree:   {theirs:.4f} s = {lon.size / theirs:,.0f} points/s "
          f"(tree build + query, best of {runs})")
    print(f"[{name}] speed-up: {theirs / ours:.1f}x (target >= {TARGET:.0f}x)")
    return same


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--fences", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--set", choices=("blobs", "dense", "both"), default="both")
    ap.add_argument("--runs", type=int, default=7, help="timed runs of each, best taken")
    ap.add_argument("--spiky", action="store_true", help="blobs: spiky stars instead")
    args = ap.parse_args()
    same = True
    if args.set in ("blobs", "both"):
        rng = np.random.default_rng(args.seed)
        polys = [shapely.Polygon(r) for r in random_fences(args.fences, rng, args.spiky)]
        lon = rng.uniform(BOX[0], BOX[2], args.points)
        lat = rng.uniform(BOX[1], BOX[3], args.points)
        same &= compare("blobs", polys, lon, lat, args.runs)
    if args.set in ("dense", "both"):
        rng = np.random.default_rng(args.seed + 11)
        geoms = dense_fences(args.fences, rng)
        same &= compare("dense", geoms, *dense_points(args.points, rng), args.runs)
    zigzag_load()
    if not same:
        raise SystemExit("pair sets differ")


if __name__ == "__main__":
    main()
