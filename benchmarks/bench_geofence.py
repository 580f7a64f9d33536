"""FenceSet.contains against shapely 2's STRtree on 1M points and 1,000 polygon fences.

Run: .venv/bin/python benchmarks/bench_geofence.py [--points N] [--fences N] [--seed S]
Fences are random star-shaped polygons (20-200 vertices, 300 m to 20 km radius) over a
country-sized box (10 x 10 degrees around Germany); points are uniform over the same box.
Also prints the load time and peak memory of a long zig-zag corridor (400 vertices between
latitudes -80 and 80): memory must follow the vertices, not the length of the line.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402
import shapely  # noqa: E402

from chainsight.geofence import FenceSet  # noqa: E402

BOX = (5.0, 45.0, 15.0, 55.0)  # lon_min, lat_min, lon_max, lat_max


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--fences", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--spiky", action="store_true", help="spiky stars instead of smooth blobs")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rings = random_fences(args.fences, rng, args.spiky)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"fence_id": f"f{i}"},
         "geometry": {"type": "Polygon", "coordinates": [r.tolist()]}}
        for i, r in enumerate(rings)]}
    t = time.perf_counter()
    fences = FenceSet.from_geojson(fc)
    print(f"FenceSet.from_geojson: {len(fences)} fences in {time.perf_counter() - t:.2f} s")
    lon = rng.uniform(BOX[0], BOX[2], args.points)
    lat = rng.uniform(BOX[1], BOX[3], args.points)

    fences.contains(lon[:1000], lat[:1000])  # JIT compile / load from cache
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        pts, fen = fences.contains(lon, lat)
        best = min(best, time.perf_counter() - t)

    polys = [shapely.Polygon(r) for r in rings]
    points = shapely.points(lon, lat)
    t_shapely = np.inf
    for _ in range(5):
        t = time.perf_counter()
        ref = shapely.STRtree(polys).query(points, predicate="intersects")
        t_shapely = min(t_shapely, time.perf_counter() - t)

    order = np.lexsort((ref[1], ref[0]))
    same = np.array_equal(ref[0][order], pts) and np.array_equal(ref[1][order], fen)
    print(f"pairs: {pts.size} (shapely {ref.shape[1]}), identical: {same}")
    print(f"FenceSet.contains: {best:.3f} s = {args.points / best:,.0f} points/s (best of 5)")
    print(f"shapely STRtree:   {t_shapely:.3f} s = {args.points / t_shapely:,.0f} points/s "
          "(tree build + query, best of 5)")
    print(f"speed-up: {t_shapely / best:.1f}x")
    zigzag_load()
    if not same:
        raise SystemExit("pair sets differ")


if __name__ == "__main__":
    main()
