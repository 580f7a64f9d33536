"""Property tests: FenceSet.contains agrees with shapely on random polygons with holes and on
multipolygons (points within 1e-9 degrees of an edge are skipped), and is unchanged when
everything moves across the antimeridian."""

import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_geofence import vincenty

from chainsight.geofence import FenceSet
from chainsight.geofence.index import SURE

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def star(rng, cx, cy, r_min, r_max, n):
    """A simple (star-shaped) ring around (cx, cy) with radii in [r_min, r_max)."""
    ang = (np.arange(n) + rng.uniform(0, 0.9, n)) * (2 * np.pi / n)  # gaps < pi: simple ring
    r = rng.uniform(r_min, r_max, n)
    ring = np.column_stack([cx + r * np.cos(ang), cy + r * np.sin(ang)])
    return np.vstack([ring, ring[:1]])


def random_polygon(rng, cx, cy, size):
    """A polygon with 0-3 holes; holes are star rings well inside the shell's inner radius."""
    shell = star(rng, cx, cy, 0.6 * size, size, int(rng.integers(3, 40)))
    holes = []
    for _ in range(int(rng.integers(0, 4))):
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.35 * size)
        h = 0.12 * size
        holes.append(star(rng, cx + d * np.cos(a), cy + d * np.sin(a), 0.3 * h, h,
                          int(rng.integers(3, 12))))
    poly = shapely.Polygon(shell, holes)
    if not poly.is_valid:  # overlapping holes: drop them
        poly = shapely.Polygon(shell)
    return poly


def as_feature(fid, geom):
    return {"type": "Feature", "properties": {"fence_id": fid},
            "geometry": shapely.geometry.mapping(geom)}


def fenceset(geoms):
    features = [as_feature(f"f{i}", g) for i, g in enumerate(geoms)]
    return FenceSet.from_geojson({"type": "FeatureCollection", "features": features})


def away_from_edges(geoms, lon, lat):
    near = shapely.STRtree([g.boundary for g in geoms]).query(
        shapely.points(lon, lat), predicate="dwithin", distance=1e-9)[0]
    ok = np.ones(lon.size, bool)
    ok[near] = False
    return ok


def check_against_shapely(geoms, lon, lat):
    keep = away_from_edges(geoms, lon, lat)
    lon, lat = lon[keep], lat[keep]
    p, f = fenceset(geoms).contains(lon, lat)
    pt, fe = shapely.STRtree(geoms).query(shapely.points(lon, lat), predicate="within")
    order = np.lexsort((fe, pt))
    assert np.array_equal(p, pt[order]) and np.array_equal(f, fe[order])
    return p.size


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), lon0=st.floats(-170, 170), lat0=st.floats(-80, 80),
       size=st.sampled_from([1e-3, 0.05, 2.0]))
def test_polygons_with_holes_match_shapely(seed, lon0, lat0, size):
    rng = np.random.default_rng(seed)
    geoms = [random_polygon(rng, lon0 + rng.uniform(-2, 2) * size, lat0 + rng.uniform(-2, 2) * size,
                            size) for _ in range(int(rng.integers(1, 6)))]
    lon = lon0 + rng.uniform(-3.5, 3.5, 3000) * size
    lat = np.clip(lat0 + rng.uniform(-3.5, 3.5, 3000) * size, -90, 90)
    check_against_shapely(geoms, lon, lat)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), lon0=st.floats(-170, 170), lat0=st.floats(-80, 80))
def test_multipolygons_match_shapely(seed, lon0, lat0):
    rng = np.random.default_rng(seed)
    geoms = []
    for _ in range(int(rng.integers(1, 4))):
        parts = [random_polygon(rng, lon0 + 3 * k, lat0 + rng.uniform(-0.5, 0.5), 1.0)
                 for k in range(int(rng.integers(1, 4)))]  # side by side, disjoint
        geoms.append(shapely.MultiPolygon(parts))
        lon0 += rng.uniform(-1, 1)
    lon = lon0 + rng.uniform(-3, 10, 3000)
    lat = lat0 + rng.uniform(-3, 3, 3000)
    check_against_shapely(geoms, lon, lat)


def test_many_fences_match_shapely():
    """Hundreds of overlapping fences of mixed sizes: exercises the grid and its shortcuts."""
    rng = np.random.default_rng(5)
    geoms = [random_polygon(rng, rng.uniform(0, 4), rng.uniform(40, 44),
                            10 ** rng.uniform(-3, -0.5)) for _ in range(300)]
    lon, lat = rng.uniform(-0.5, 4.5, 200_000), rng.uniform(39.5, 44.5, 200_000)
    assert check_against_shapely(geoms, lon, lat) > 1000
    fs = fenceset(geoms)
    assert (fs._indexes[0.0].entry["state"] == SURE).sum() > 100  # the grid shortcut was used


def test_many_circles_match_vincenty():
    rng = np.random.default_rng(6)
    lon0, lat0 = rng.uniform(-10, 10, 200), rng.uniform(50, 60, 200)
    radius = 10 ** rng.uniform(2, 4.5, 200)
    fs = FenceSet.from_geojson({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"fence_id": f"c{i}", "radius_m": radius[i]},
         "geometry": {"type": "Point", "coordinates": [lon0[i], lat0[i]]}} for i in range(200)]})
    lon, lat = rng.uniform(-10.5, 10.5, 5_000), rng.uniform(49.5, 60.5, 5_000)
    got = np.zeros((lon.size, 200), bool)
    got[fs.contains(lon, lat)] = True
    d = vincenty(lon[:, None], lat[:, None], lon0[None, :], lat0[None, :])
    clear = np.abs(d - radius) > 1e-3 * radius
    assert np.array_equal(got[clear], (d < radius)[clear]) and got.sum() > 10


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(-3, 3), lat0=st.floats(-60, 60))
def test_antimeridian_is_invisible(seed, shift, lat0):
    """Fences and points moved so the fences straddle +-180 give the same pairs."""
    rng = np.random.default_rng(seed)
    geoms = [random_polygon(rng, rng.uniform(-2, 2), lat0 + rng.uniform(-2, 2), 1.5)
             for _ in range(3)]
    lon, lat = rng.uniform(-5, 5, 2000), lat0 + rng.uniform(-5, 5, 2000)
    keep = away_from_edges(geoms, lon, lat)
    lon, lat = lon[keep], lat[keep]
    before = fenceset(geoms).contains(lon, lat)

    def move(x):
        return (x + 180 + shift + 180) % 360 - 180

    moved = [shapely.transform(g, lambda xy: np.column_stack([move(xy[:, 0]), xy[:, 1]]))
             for g in geoms]
    after = fenceset(moved).contains(move(lon), lat)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
