"""FenceSet: parsing, validation, every geometry type, distances, antimeridian and poles."""

import json
import tracemalloc

import numpy as np
import pytest

from chainsight.geofence import FenceError, FenceSet
from chainsight.geofence.index import _block, _hash_table

WGS_A, WGS_F = 6378137.0, 1 / 298.257223563


def vincenty(lon1, lat1, lon2, lat2):
    """Independent WGS-84 distance (Vincenty's inverse formula, vectorised)."""
    lon1, lat1, lon2, lat2 = np.broadcast_arrays(*map(np.asarray, (lon1, lat1, lon2, lat2)))
    a, f = WGS_A, WGS_F
    b = a * (1 - f)
    big_l = np.radians(lon2 - lon1)
    u1 = np.arctan((1 - f) * np.tan(np.radians(lat1)))
    u2 = np.arctan((1 - f) * np.tan(np.radians(lat2)))
    su1, cu1, su2, cu2 = np.sin(u1), np.cos(u1), np.sin(u2), np.cos(u2)
    lam = big_l
    for _ in range(100):
        sl, cl = np.sin(lam), np.cos(lam)
        ss = np.hypot(cu2 * sl, cu1 * su2 - su1 * cu2 * cl)
        cs = su1 * su2 + cu1 * cu2 * cl
        sigma = np.arctan2(ss, cs)
        sa = np.where(ss > 0, cu1 * cu2 * sl / np.where(ss > 0, ss, 1), 0.0)
        c2a = 1 - sa * sa
        c2m = np.where(c2a > 0, cs - 2 * su1 * su2 / np.where(c2a > 0, c2a, 1), 0.0)
        c = f / 16 * c2a * (4 + f * (4 - 3 * c2a))
        prev = lam
        lam = big_l + (1 - c) * f * sa * (sigma + c * ss * (c2m + c * cs * (-1 + 2 * c2m**2)))
        if np.all(np.abs(lam - prev) < 1e-13):
            break
    u2sq = c2a * (a * a - b * b) / (b * b)
    big_a = 1 + u2sq / 16384 * (4096 + u2sq * (-768 + u2sq * (320 - 175 * u2sq)))
    big_b = u2sq / 1024 * (256 + u2sq * (-128 + u2sq * (74 - 47 * u2sq)))
    ds = big_b * ss * (c2m + big_b / 4 * (
        cs * (-1 + 2 * c2m**2) - big_b / 6 * c2m * (-3 + 4 * ss**2) * (-3 + 4 * c2m**2)))
    return b * big_a * (sigma - ds)


def destination(lon, lat, bearing_deg, dist_m):
    """Spherical destination point: only used to scatter test points, never as a reference."""
    r = 6371008.8
    p1, l1, th, d = np.radians(lat), np.radians(lon), np.radians(bearing_deg), dist_m / r
    p2 = np.arcsin(np.sin(p1) * np.cos(d) + np.cos(p1) * np.sin(d) * np.cos(th))
    l2 = l1 + np.arctan2(np.sin(th) * np.sin(d) * np.cos(p1), np.cos(d) - np.sin(p1) * np.sin(p2))
    return (np.degrees(l2) + 180) % 360 - 180, np.degrees(p2)


def feature(fence_id, geometry, **props):
    return {"type": "Feature", "properties": {"fence_id": fence_id, **props}, "geometry": geometry}


def polygon(*rings):
    return {"type": "Polygon", "coordinates": [list(map(list, r)) for r in rings]}


def box(x0, y0, x1, y1):
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def fenceset(*features):
    return FenceSet.from_geojson({"type": "FeatureCollection", "features": list(features)})


def inside_set(fs, lon, lat, margin=0.0):
    p, f = fs.contains(np.asarray(lon, float), np.asarray(lat, float), margin)
    return {(int(a), fs.ids[b]) for a, b in zip(p, f, strict=True)}


def corridor_distance(line, lon, lat):
    """Independent distance from a point to a lon/lat-linear line: Vincenty to samples of the
    line, coarse then refined around the best sample."""
    line = np.asarray(line, float)
    best = np.inf
    for (x0, y0), (x1, y1) in zip(line[:-1], line[1:], strict=True):
        x1 = x0 + ((x1 - x0 + 180) % 360 - 180)
        t = np.linspace(0, 1, 2001)
        d = vincenty(lon, lat, x0 + t * (x1 - x0), y0 + t * (y1 - y0))
        k = int(np.argmin(d))
        t = np.linspace(t[max(k - 1, 0)], t[min(k + 1, t.size - 1)], 2001)
        best = min(best, vincenty(lon, lat, x0 + t * (x1 - x0), y0 + t * (y1 - y0)).min())
    return best


# --- parsing and metadata -----------------------------------------------------------------

def test_metadata_and_len():
    fs = fenceset(
        feature("a", polygon(box(0, 0, 1, 1)), name="Depot A", kind="hub", dwell_max_min=30),
        feature("b", {"type": "Point", "coordinates": [5, 5]}, radius_m=100, kind="cold_store"),
        feature("c", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, width_m=50))
    assert len(fs) == 3 and fs.ids == ["a", "b", "c"]
    assert fs.names == ["Depot A", None, None]
    assert fs.kinds == ["hub", "cold_store", None]
    assert fs.dwell_max_min[0] == 30 and np.isnan(fs.dwell_max_min[1:]).all()
    assert fs.find("b") == 1 and fs.find("zz") is None


def test_empty_collection_and_nan_points():
    fs = fenceset()
    p, f = fs.contains(np.array([1.0]), np.array([2.0]))
    assert p.size == f.size == 0
    fs = fenceset(feature("a", polygon(box(0, 0, 1, 1))))
    assert inside_set(fs, [np.nan, 0.5, 0.5], [0.5, np.nan, 0.5]) == {(2, "a")}
    lon = [np.inf, -np.inf, 0.5, 360.5, -359.5, 0.5]
    lat = [0.5, 0.5, np.inf, 0.5, 0.5, 0.5]
    assert inside_set(fs, lon, lat) == {(3, "a"), (4, "a"), (5, "a")}


@pytest.mark.parametrize("feat, words", [
    (feature("bow", polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])),
     ["'bow'", "Self-intersection"]),
    (feature("open", polygon([(0, 0), (1, 0), (1, 1), (0, 1)])), ["'open'", "not closed"]),
    (feature("few", polygon([(0, 0), (1, 0), (0, 0)])), ["'few'", "at least 4"]),
    (feature("hole", polygon(box(0, 0, 1, 1), box(2, 2, 3, 3))), ["'hole'", "invalid Polygon"]),
    (feature("circ", {"type": "Point", "coordinates": [0, 0]}), ["'circ'", "radius_m"]),
    (feature("circ0", {"type": "Point", "coordinates": [0, 0]}, radius_m=0),
     ["'circ0'", "radius_m"]),
    (feature("cor", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}), ["'cor'", "width_m"]),
    (feature("ml", {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]]]}),
     ["'ml'", "unsupported geometry 'MultiLineString'"]),
    (feature("nogeom", None), ["'nogeom'", "unsupported geometry None"]),
    (feature("kind", polygon(box(0, 0, 1, 1)), kind="warehouse"), ["'kind'", "unknown kind"]),
    (feature("dw", polygon(box(0, 0, 1, 1)), dwell_max_min=-5), ["'dw'", "dwell_max_min"]),
    (feature("far", polygon(box(0, 0, 1, 95))), ["'far'", "outside lon"]),
    (feature("txt", polygon([(0, 0), ("a", 0), (1, 1), (0, 0)])), ["'txt'", "not [lon, lat]"]),
    (feature("mp", {"type": "MultiPolygon", "coordinates": [[box(0, 0, 2, 2)], [box(1, 1, 3, 3)]]}),
     ["'mp'", "invalid MultiPolygon"]),
])
def test_invalid_fence_one_line_error_naming_it(feat, words):
    with pytest.raises(FenceError) as e:
        fenceset(feat)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("fence ")
    for w in words:
        assert w in msg


BOW = [(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)]  # self-intersecting
OPEN = [(0, 0), (1, 0), (1, 1), (0, 1)]
TWICE_ROUND = [(lon, 80) for lon in [*range(-180, 180, 30)] * 2 + [-180]]


@pytest.mark.parametrize("features, error", [
    ([feature("e", polygon(box(0, 0, 1, 1), OPEN, [(0, 0), [[1]], (1, 1), (0, 0)]))],
     "fence 'e': hole 1 is not closed"),
    ([feature("a", polygon(BOW)), feature("b", polygon(box(0, 0, 1, 1)), kind="x")],
     "fence 'a': invalid Polygon"),
    ([feature("a", polygon(OPEN)), feature("b", polygon(BOW))], "fence 'a': outer ring is not"),
    ([feature("a", polygon(BOW)), feature("b", polygon(OPEN))], "fence 'a': invalid Polygon"),
    ([feature("a", polygon(box(0, 0, 1, 1))), feature("a", polygon(BOW))],
     "fence 'a': invalid Polygon"),  # a fence's geometry is checked before its id is a duplicate
    ([feature("a", polygon(TWICE_ROUND)), feature("b", polygon(OPEN))],
     "fence 'a': outer ring winds around the globe more than once"),
    ([feature("a", polygon(box(0, 0, 1, 95))), {"type": "Feature", "properties": {}}],
     "fence 'a': outer ring has a position outside"),
])
def test_the_first_invalid_fence_in_the_file_is_named(features, error):
    """Rings are checked all at once; the error is still the first one in file order."""
    with pytest.raises(FenceError, match=f"^{error}"):
        fenceset(*features)


def deep(levels, inner="0"):
    """JSON text of `inner` inside `levels` nested arrays."""
    return "[" * levels + inner + "]" * levels


@pytest.mark.parametrize("coords, words", [
    ([True, False], ["Point position 0"]),
    ([[0, 0], [1, 0], [True, 1], [0, 0]], ["outer ring position 2"]),  # numpy would take 1
    ([[0, 0], [float("nan"), 1], [1, 1], [0, 0]], ["outer ring position 1"]),
    ([[0, 0], [1, float("inf")], [1, 1], [0, 0]], ["outer ring position 1"]),
    ([[0, 0], [10**400, 1], [1, 1], [0, 0]], ["outer ring position 1"]),
    ([[0, 0], [None, 1], [1, 1], [0, 0]], ["outer ring position 1"]),
    ([[0.0, 0.0], [1.0, "1"], [1.0, 1.0], [0.0, 0.0]], ["outer ring position 1"]),
    ([[0.0, 0.0], [1.0, 1.0], [float("nan"), 1.0], [0.0, 0.0]], ["outer ring position 2"]),
])
def test_coordinates_must_be_numbers(coords, words):
    geometry = ({"type": "Point", "coordinates": coords} if len(coords) == 2
                else {"type": "Polygon", "coordinates": [coords]})
    with pytest.raises(FenceError) as e:
        fenceset(feature("F", geometry, radius_m=10))
    msg = str(e.value)
    assert msg.startswith("fence 'F': coordinates must be numbers: ") and "\n" not in msg
    for w in words:
        assert w in msg


@pytest.mark.parametrize("geometry, words", [
    ({"type": "LineString", "coordinates": [[0, 0], [[1, 1]]]}, "LineString position 1"),
    ({"type": "LineString", "coordinates": [[0, 0], [1, 1, 1, 1]]}, "LineString position 1"),
    ({"type": "Polygon", "coordinates": box(0, 0, 1, 1)}, "outer ring needs at least 4"),
    ({"type": "Polygon", "coordinates": [[box(0, 0, 1, 1)] * 4]}, "outer ring position 0"),
    ({"type": "LineString", "coordinates": json.loads(deep(900))}, "LineString needs at least"),
    ({"type": "LineString", "coordinates": [[0, 0], json.loads(deep(900))]},
     "LineString position 1"),
    ({"type": json.loads(deep(900))}, "unsupported geometry (a JSON array)"),
])
def test_wrong_nesting_is_one_line(geometry, words):
    with pytest.raises(FenceError) as e:
        fenceset(feature("F", geometry, width_m=10))
    msg = str(e.value)
    assert msg.startswith("fence 'F': ") and words in msg and "\n" not in msg and len(msg) < 200


def test_deeply_nested_file_is_one_line_error(tmp_path):
    head = '{"type": "FeatureCollection", "features": [{"type": "Feature", '
    files = {
        "coords": head + '"properties": {"fence_id": "d", "radius_m": 5}, "geometry": '
                         '{"type": "Point", "coordinates": ' + deep(100_000) + "}}]}",
        "props": head + '"properties": {"fence_id": "d", "radius_m": 5, "x": '
                        + deep(100_000) + '}, "geometry": {"type": "Point", '
                        '"coordinates": [0, 0]}}]}',
    }
    for name, text in files.items():
        path = tmp_path / f"{name}.geojson"
        path.write_text(text)
        with pytest.raises(FenceError, match=rf"^.*{name}\.geojson: invalid JSON: nested too "
                                             r"deeply$"):
            FenceSet.from_file(path)


def test_replay_exits_2_with_one_line_on_bad_fences(tmp_path, capsys):
    from chainsight.cli import main

    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "gps", "device_id": "d", "ts": 0, "lat": 1, "lon": 1}\n')
    bad = tmp_path / "bad.geojson"
    for geometry in ('{"type": "Point", "coordinates": [true, false]}',
                     '{"type": "Point", "coordinates": ' + deep(100_000) + "}"):
        bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                       '"properties": {"fence_id": "F", "radius_m": 5}, "geometry": '
                       + geometry + "}]}")
        alerts = tmp_path / "alerts.jsonl"
        assert main(["replay", str(events), "--fences", str(bad),
                     "--alerts-out", str(alerts)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("chainsight replay: ") and err.count("\n") == 1
        assert "bad.geojson" in err and not alerts.exists()


def test_missing_and_duplicate_fence_id():
    with pytest.raises(FenceError, match=r"^feature 1: missing or non-string properties.fence_id$"):
        fenceset(feature("a", polygon(box(0, 0, 1, 1))),
                 {"type": "Feature", "properties": {}, "geometry": polygon(box(0, 0, 1, 1))})
    with pytest.raises(FenceError, match=r"fence 'a': duplicate fence_id \(features 0 and 1\)"):
        fenceset(feature("a", polygon(box(0, 0, 1, 1))), feature("a", polygon(box(2, 2, 3, 3))))
    with pytest.raises(FenceError, match="FeatureCollection"):
        FenceSet.from_geojson({"type": "Feature"})


def test_from_file_names_the_file(tmp_path):
    good = tmp_path / "fences.geojson"
    good.write_text(json.dumps({"type": "FeatureCollection", "features": [
        feature("a", polygon(box(0, 0, 1, 1)))]}))
    assert FenceSet.from_file(good).ids == ["a"]
    bom = tmp_path / "bom.geojson"  # a UTF-8 byte-order mark, altitudes and integers
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"type": "FeatureCollection", "features": [
        feature("a", polygon([(x, y, 5) for x, y in box(0, 0, 1, 1)]))]}).encode())
    assert FenceSet.from_file(bom).geometry_keys == FenceSet.from_file(good).geometry_keys
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(FenceError, match=r"bad\.geojson: invalid JSON"):
        FenceSet.from_file(bad)
    with pytest.raises(FenceError, match=r"missing\.geojson: cannot read"):
        FenceSet.from_file(tmp_path / "missing.geojson")
    invalid = tmp_path / "invalid.geojson"
    invalid.write_text(json.dumps({"type": "FeatureCollection", "features": [
        feature("x", {"type": "Point", "coordinates": [0, 0]})]}))
    with pytest.raises(FenceError, match=r"invalid\.geojson: fence 'x': .*radius_m"):
        FenceSet.from_file(invalid)


# --- polygons -----------------------------------------------------------------------------

def test_polygon_with_holes():
    fs = fenceset(feature("p", polygon(box(0, 0, 10, 10), box(1, 1, 3, 3), box(5, 5, 8, 9))))
    lon = [0.5, 2, 4, 6, 9.5, 11, -1]
    lat = [0.5, 2, 4, 7, 9.5, 5, 5]
    assert inside_set(fs, lon, lat) == {(0, "p"), (2, "p"), (4, "p")}


def test_multipolygon_parts_and_holes():
    mp = {"type": "MultiPolygon", "coordinates": [
        [box(0, 0, 1, 1)], [box(2, 0, 4, 2), box(2.5, 0.5, 3.5, 1.5)]]}
    fs = fenceset(feature("m", mp))
    lon = [0.5, 1.5, 2.2, 3, 3.8, 5]
    lat = [0.5, 0.5, 1.0, 1, 1.9, 1]
    assert inside_set(fs, lon, lat) == {(0, "m"), (2, "m"), (4, "m")}


def test_many_pairs_per_point():
    """Far more pairs than points (nested fences, a multipolygon, a circle, a corridor whose
    pieces overlap), and more grid entries than one batch of points takes: none lost, none
    repeated, in order."""
    half = 1 + 0.1 * np.arange(400)
    nested = [feature(f"n{i}", polygon(box(-h, -h, h, h))) for i, h in enumerate(half)]
    parts = {"type": "MultiPolygon", "coordinates": [[box(-5, -5, 5, 5), box(-2, -2, 2, 2)],
                                                     [box(-1.5, -1.5, 1.5, 1.5)]]}
    fs = fenceset(*nested, feature("two", parts),
                  feature("c", {"type": "Point", "coordinates": [0, 0]}, radius_m=600_000),
                  feature("k", {"type": "LineString", "coordinates": [[-1, 0], [1, 0]]},
                          width_m=300_000))
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(-0.9, 0.9, 2_000), rng.uniform(-0.9, 0.9, 2_000)
    p, f = fs.contains(lon, lat)
    assert np.array_equal(p, np.repeat(np.arange(lon.size), 403))
    assert np.array_equal(f, np.tile(np.arange(403), lon.size))


def test_grid_block_lookup_with_long_probe_runs():
    """Every block is found, those displaced by collisions included (random keys: many
    collide), and no absent one."""
    rng = np.random.default_rng(4)
    keys = rng.permutation(np.unique(rng.integers(0, 1 << 35, 40_000)))
    bits = int(np.ceil(np.log2(4 * keys.size)))
    table = _hash_table(keys, bits)
    assert [_block(table, bits, k) for k in keys] == list(range(keys.size))
    absent = np.setdiff1d(rng.integers(0, 1 << 35, 2_000), keys)
    assert {_block(table, bits, k) for k in absent} == {-1}


def test_pairs_sorted_by_point_then_fence():
    fs = fenceset(feature("big", polygon(box(0, 0, 10, 10))),
                  feature("small", polygon(box(4, 4, 6, 6))),
                  feature("circle", {"type": "Point", "coordinates": [5, 5]}, radius_m=60_000))
    p, f = fs.contains(np.array([5, 20, 1, 5.0]), np.array([5, 20, 1, 4.5]))
    assert p.tolist() == [0, 0, 0, 2, 3, 3, 3] and f.tolist() == [0, 1, 2, 0, 0, 1, 2]


def test_margin_grows_and_shrinks_polygons():
    fs = fenceset(feature("sq", polygon(box(0, 0, 0.1, 0.1))))
    lat = 0.05
    outside_60m = 0.1 + 60 / 111_320  # 60 m east of the east edge
    inside_60m = 0.1 - 60 / 111_320
    lon = [outside_60m, inside_60m, 0.05]
    assert inside_set(fs, lon, [lat] * 3) == {(1, "sq"), (2, "sq")}
    assert inside_set(fs, lon, [lat] * 3, 100) == {(0, "sq"), (1, "sq"), (2, "sq")}
    assert inside_set(fs, lon, [lat] * 3, 50) == {(1, "sq"), (2, "sq")}
    assert inside_set(fs, lon, [lat] * 3, -100) == {(2, "sq")}
    assert inside_set(fs, lon, [lat] * 3, -50) == {(1, "sq"), (2, "sq")}


def test_margin_on_circles_and_corridors():
    fs = fenceset(feature("c", {"type": "Point", "coordinates": [10, 50]}, radius_m=1000),
                  feature("k", {"type": "LineString", "coordinates": [[11, 50], [11, 51]]},
                          width_m=200))
    lon = [10, 10, 11.002, 11.0005]  # circle: 900 m and 1100 m north; corridor: 143 m, 36 m
    lat = [50 + 900 / 111_229, 50 + 1100 / 111_229, 50.5, 50.5]
    assert inside_set(fs, lon, lat) == {(0, "c"), (3, "k")}
    assert inside_set(fs, lon, lat, 150) == {(0, "c"), (1, "c"), (2, "k"), (3, "k")}
    assert inside_set(fs, lon, lat, -50) == {(0, "c"), (3, "k")}
    assert inside_set(fs, lon, lat, -150) == set()  # the corridor is gone
    assert inside_set(fs, lon, lat, -1000) == set()


def test_shrinking_a_big_polygon_among_small_ones():
    """Small fences make the grid fine, so the big square's inner cells are known inside
    without a test; a shrunk fence must still measure its margin there."""
    small = [feature(f"s{i}", polygon(box(i, 5, i + 0.001, 5.001))) for i in range(50)]
    fs = fenceset(feature("big", polygon(box(0, 0, 0.1, 0.1))), *small)
    lon, lat = [0.015, 0.05], [0.05, 0.05]  # 1.67 km and 5.6 km inside
    assert inside_set(fs, lon, lat) == {(0, "big"), (1, "big")}
    assert inside_set(fs, lon, lat, -2000) == {(1, "big")}
    assert inside_set(fs, lon, lat, 2000) == {(0, "big"), (1, "big")}


# --- circles and corridors against Vincenty -----------------------------------------------

@pytest.mark.parametrize("lon0, lat0, radius", [
    (4.9, 52.4, 300.0), (-70.0, -33.4, 5_000.0), (18.0, 69.6, 50_000.0), (0.0, 0.0, 120_000.0),
    (179.99, 10.0, 5_000.0), (30.0, 89.95, 20_000.0), (-60.0, -89.9, 30_000.0),
])
def test_circle_matches_vincenty(lon0, lat0, radius):
    fs = fenceset(feature("c", {"type": "Point", "coordinates": [lon0, lat0]}, radius_m=radius))
    rng = np.random.default_rng(1)
    bearing = rng.uniform(0, 360, 400)
    lon, lat = destination(lon0, lat0, bearing, radius * rng.uniform(0.9, 1.1, 400))
    true = vincenty(lon0, lat0, lon, lat)
    inside = np.zeros(lon.size, bool)
    inside[fs.contains(lon, lat)[0]] = True
    clear = np.abs(true - radius) > 0.001 * radius  # tighter than the contract's 0.5 %
    assert clear.sum() > 300
    assert np.array_equal(inside[clear], (true < radius)[clear])
    for i in np.flatnonzero(true > radius)[:20]:
        got = fs.distance_m(lon[i], lat[i], "c")
        assert abs(got - (true[i] - radius)) <= 0.001 * true[i]


@pytest.mark.parametrize("line, width", [
    ([[10.0, 59.8], [10.3, 60.0], [10.1, 60.25]], 1_000.0),  # bends, at 60 N
    ([[179.8, -17.0], [-179.9, -16.9]], 400.0),  # crosses the antimeridian
    ([[-3.0, 40.0], [-3.0, 40.002]], 60.0),  # short and narrow: the round end caps matter
    ([[0.0, 88.5], [60.0, 89.0]], 2_000.0),  # near the pole
])
def test_corridor_matches_vincenty(line, width):
    fs = fenceset(feature("k", {"type": "LineString", "coordinates": line}, width_m=width))
    rng = np.random.default_rng(2)
    line_a = np.asarray(line)
    t = rng.uniform(-0.2, 1.2, 60)
    seg = rng.integers(0, len(line) - 1, 60)
    x0, y0 = line_a[seg, 0], line_a[seg, 1]
    dx = (line_a[seg + 1, 0] - x0 + 180) % 360 - 180
    lon, lat = destination(x0 + t * dx, y0 + t * (line_a[seg + 1, 1] - y0),
                           rng.uniform(0, 360, 60), width * rng.uniform(0, 1.5, 60))
    true = np.array([corridor_distance(line, a, b) for a, b in zip(lon, lat, strict=True)])
    inside = np.zeros(lon.size, bool)
    inside[fs.contains(lon, lat)[0]] = True
    clear = np.abs(true - width / 2) > 0.001 * true + 0.01
    assert clear.sum() > 40
    assert np.array_equal(inside[clear], (true < width / 2)[clear])
    for i in np.flatnonzero(true > width / 2):
        got = fs.distance_m(lon[i], lat[i], "k") + width / 2
        assert abs(got - true[i]) <= 0.001 * true[i] + 0.01


def zigzag_corridor(n=400):
    """A corridor zig-zagging between latitudes -80 and 80: a few KB of GeoJSON whose line is
    millions of kilometres long."""
    lon = np.linspace(-170, 170, n)
    lat = np.where(np.arange(n) % 2 == 0, -80.0, 80.0)
    line = {"type": "LineString", "coordinates": np.column_stack([lon, lat]).tolist()}
    return feature("zz", line, kind="corridor", width_m=5_000)


def test_long_corridor_memory_follows_vertices_not_length():
    fenceset(feature("warm", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                     width_m=10))  # kernels compiled / loaded outside the measurement
    tracemalloc.start()
    try:
        fs = fenceset(zigzag_corridor())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6
    # the first segment runs from (-170, -80) to (-169.148, 80): its middle is inside, and so
    # is a point 2 km east of it; 20 km east, or beyond the segment's end, is outside
    x_mid = -170 + 170 / 399
    assert inside_set(fs, [x_mid, x_mid + 0.018, x_mid + 0.18, -169.148],
                      [0.0, 0.0, 0.0, 85.0]) == {(0, "zz"), (1, "zz")}


def test_distance_and_nearest():
    fs = fenceset(
        feature("hub", polygon(box(4.0, 52.0, 4.1, 52.1)), kind="hub"),
        feature("cs1", polygon(box(5.0, 52.0, 5.01, 52.01)), kind="cold_store"),
        feature("cs2", {"type": "Point", "coordinates": [4.5, 52.05]}, radius_m=500,
                kind="cold_store"))
    name, d = fs.nearest(4.2, 52.05, "cold_store")
    assert name == "cs2"
    assert abs(d - (vincenty(4.2, 52.05, 4.5, 52.05) - 500)) < 0.001 * d
    assert fs.nearest(4.05, 52.05, "hub") == ("hub", 0.0)
    assert fs.nearest(4.05, 52.05, "restricted") is None
    # distance to a polygon = distance to its nearest edge (here due east of the east edge)
    assert abs(fs.distance_m(4.2, 52.05, "hub") - vincenty(4.1, 52.05, 4.2, 52.05)) < 0.5
    assert fs.distances_m(5.005, 52.005)[1] == 0.0
    with pytest.raises(KeyError):
        fs.distance_m(0, 0, "nope")


# --- antimeridian and poles ---------------------------------------------------------------

def test_polygon_across_antimeridian():
    fs = fenceset(feature("fiji", polygon([(179, -17), (-179, -17), (-179, -16), (179, -16),
                                           (179, -17)])))
    lon = [179.5, -179.5, 180.0, -180.0, 0.0, 178.9, -178.9, 539.5]
    lat = [-16.5] * 8
    assert inside_set(fs, lon, lat) == {(0, "fiji"), (1, "fiji"), (2, "fiji"), (3, "fiji"),
                                        (7, "fiji")}


def test_multipolygon_split_at_antimeridian():
    mp = {"type": "MultiPolygon", "coordinates": [[box(170, 50, 180, 60)],
                                                  [box(-180, 50, -170, 60)]]}
    fs = fenceset(feature("split", mp))
    lon = [175, -175, 180, -180, 0, 165, -165]
    assert inside_set(fs, lon, [55] * 7) == {(i, "split") for i in range(4)}


def test_circle_and_corridor_across_antimeridian():
    fs = fenceset(feature("c", {"type": "Point", "coordinates": [179.98, 0]}, radius_m=5_000),
                  feature("k", {"type": "LineString", "coordinates": [[179.5, 1], [-179.5, 1]]},
                          width_m=2_000))
    lon = [-179.99, 179.99, -179.9, 179.7, -179.7, -179.5, 0.0]
    lat = [0.0, 0.0, 0.0, 1.005, 1.005, 1.02, 1.0]
    assert inside_set(fs, lon, lat) == {(0, "c"), (1, "c"), (3, "k"), (4, "k")}


def test_polar_fences():
    ring_80 = [(lon, 80.0) for lon in range(-180, 180, 30)] + [(-180, 80.0)]
    fs = fenceset(
        feature("cap_ring", polygon(ring_80)),  # a ring winding around the pole
        feature("cap_box", polygon([(-180, -80), (180, -80), (180, -90), (-180, -90),
                                    (-180, -80)])),  # RFC 7946 style cap, along the seam
        feature("pole_circle", {"type": "Point", "coordinates": [45.0, 89.9]}, radius_m=30_000))
    lon = [0, 90, 180, -135, 10, 0, 100, -45, -180, 0, -135]
    lat = [85, 85, 85, 89.99, 75, -85, -89, 89.999, 85, -75, 89.9]
    got = inside_set(fs, lon, lat)
    assert got == {(0, "cap_ring"), (1, "cap_ring"), (2, "cap_ring"), (3, "cap_ring"),
                   (3, "pole_circle"), (5, "cap_box"), (6, "cap_box"), (7, "cap_ring"),
                   (7, "pole_circle"), (8, "cap_ring"), (10, "cap_ring"), (10, "pole_circle")}
    # point 10 is across the pole from the circle's centre: 22 km away (35 km on a flat map)
