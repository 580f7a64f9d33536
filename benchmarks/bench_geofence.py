"""FenceSet.contains against shapely 2's STRtree on 1M points, on two sets of 1,000 fences.

Run: .venv/bin/python benchmarks/bench_geofence.py [--points N] [--fences N] [--seed S]
         [--set blobs|dense|both] [--runs N]
- blobs: random star-shaped polygons (20-200 vertices, 300 m to 20 km radius) over a
  country-sized box (10 x 10 degrees around Germany); points uniform over the same box.
- dense (dense_fences.py; the held-out shape of issue 18): jagged polygons, heavily
  overlapping, with holes, multipolygons and one fence split at the antimeridian; 99% of the
  points are uniform over the same box, 1% around the split fence.
Both print the pairs (which must be identical to shapely's), the best time of each (CPU time
of the thread, see best_of) and the speed-up (target: >= 10x). Also prints the load time and
peak memory of a long zig-zag corridor (400 vertices between latitudes -80 and 80): memory must
follow the vertices, not the length of the line.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import shapely  # noqa: E402
from dense_fences import BOX, dense_fences  # noqa: E402

from chainsight.geofence import FenceSet  # noqa: E402

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


def dense_points(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """99% uniform over BOX, 1% around the fence split at the antimeridian."""
    lon, lat = rng.uniform(BOX[0], BOX[2], n), rng.uniform(BOX[1], BOX[3], n)
    k = n // 100
    lon[:k] = (rng.uniform(179, 181, k) + 180) % 360 - 180
    lat[:k] = rng.uniform(-18.5, -16.5, k)
    return lon, lat


def best_of(runs: int, fn: Callable[[], object], seconds: float = 2.0) -> tuple[float, int]:
    """Best CPU time of this thread over at least `runs` calls, and more until `seconds` have
    passed; and the number of calls. Both sides run single-threaded in this thread, so CPU time
    is what a quiet machine's wall time would be, also while other processes load it."""
    best, n, started = np.inf, 0, time.perf_counter()
    while n < runs or time.perf_counter() - started < seconds:
        t = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t)
        n += 1
    return best, n


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
    ours, n_ours = best_of(runs, lambda: fences.contains(lon, lat))
    pts, fen = fences.contains(lon, lat)
    points = shapely.points(lon, lat)
    theirs, n_theirs = best_of(
        runs, lambda: shapely.STRtree(geoms).query(points, predicate="intersects"))
    ref = shapely.STRtree(geoms).query(points, predicate="intersects")
    order = np.lexsort((ref[1], ref[0]))
    same = np.array_equal(ref[0][order], pts) and np.array_equal(ref[1][order], fen)
    print(f"[{name}] pairs: {pts.size:,} (shapely {ref.shape[1]:,}), identical: {same}")
    print(f"[{name}] FenceSet.contains: {ours:.4f} s = {lon.size / ours:,.0f} points/s "
          f"(best of {n_ours})")
    print(f"[{name}] shapely STRtree:   {theirs:.4f} s = {lon.size / theirs:,.0f} points/s "
          f"(tree build + query, best of {n_theirs})")
    print(f"[{name}] speed-up: {theirs / ours:.1f}x (target >= {TARGET:.0f}x)")
    return same


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--fences", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--set", choices=("blobs", "dense", "both"), default="both")
    ap.add_argument("--runs", type=int, default=7,
                    help="timed runs of each at least (more until 2 s have passed), best taken")
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
