"""Geofences from GeoJSON (contract section "Geofences"), compiled for the Numba kernels.

Conventions beyond RFC 7946:
- An edge whose ends are more than 180 degrees of longitude apart crosses the antimeridian
  (the short way round), except edges running along the +-180 meridian itself. To draw a
  fence wider than 180 degrees, add intermediate vertices.
- A ring that winds once around a pole (e.g. a parallel) is closed through that pole (the one
  on the ring's side of the equator).
- Lines (polygon edges, corridors) are straight in lon/lat; distances are metres on WGS-84.
"""

from __future__ import annotations

import codecs
import hashlib
import math
from dataclasses import dataclass
from itertools import chain
from os import PathLike
from typing import Any

import numpy as np
import orjson

from .geodesy import densify, ecef, geodesic_m, piece_counts, radii, wrap_lon
from .index import (
    CIRCLE,
    CORRIDOR,
    POLYGON,
    Geometry,
    Index,
    build_index,
    choose_cell,
    contains_kernel,
    corridor_segments,
    grow_boxes,
    polygon_grids,
)

KINDS = ("hub", "customer", "restricted", "cold_store", "corridor")
PIECE_M = 2000.0  # corridor lines and measured edges are cut into pieces of at most this length
CHUNK = 16  # corridor pieces per index item (a longer segment is an item of its own)
_LIMITS = np.array([180.0, 90.0])  # |lon|, |lat|


class FenceError(ValueError):
    """An invalid fence file or feature; the message is one line naming the fence."""


@dataclass
class _Item:
    kind: int
    lon0: float  # frame centre
    hw: float  # bounding box: lon0 +- hw, lat_lo..lat_hi (before growing by `size`)
    lat_lo: float
    lat_hi: float
    size: float = 0.0  # circle radius / corridor half-width, metres
    rings: list[np.ndarray] | None = None  # polygon part: (n, 2) lon/lat in the frame, closed
    line: np.ndarray | None = None  # corridor: (n, 2) vertices, unwrapped


@dataclass
class _Fence:
    fence_id: str
    name: str | None
    kind: str | None
    dwell_max_min: float
    items: list[_Item]  # polygon parts come from _Rings.compile
    key: str = ""  # geometry fingerprint


class FenceSet:
    """An immutable set of geofences with vectorised point-in-fence queries.

    Fences are numbered 0..len-1 in file order; `ids`, `names`, `kinds` and
    `dwell_max_min` are indexed by that number.
    """

    def __init__(self, fences: list[_Fence]) -> None:
        self.ids: list[str] = [f.fence_id for f in fences]
        self.names: list[str | None] = [f.name for f in fences]
        self.kinds: list[str | None] = [f.kind for f in fences]
        self.dwell_max_min: np.ndarray = np.array([f.dwell_max_min for f in fences], float)
        self.geometry_keys: list[str] = [f.key for f in fences]  # equal keys = same geometry
        self._pos = {fid: i for i, fid in enumerate(self.ids)}
        self._fences = fences
        self._geo, box = _compile(fences)
        self._cell = choose_cell(*box)
        self._box = box
        self._indexes: dict[float, Index] = {0.0: build_index(self._geo, *box, self._cell, True)}
        self._edges: tuple[np.ndarray, ...] | None = None

    @classmethod
    def from_geojson(cls, obj: dict) -> FenceSet:
        """Parse and validate a GeoJSON FeatureCollection; raises FenceError."""
        if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection":
            raise FenceError("fences: expected a GeoJSON FeatureCollection")
        features = obj.get("features")
        if not isinstance(features, list):
            raise FenceError("fences: FeatureCollection has no 'features' list")
        fences: list[_Fence] = []
        seen: dict[str, int] = {}
        rings = _Rings()
        try:
            for i, feature in enumerate(features):
                fence = _parse_feature(i, feature, rings)
                if fence.fence_id in seen:
                    raise FenceError(f"fence {fence.fence_id!r}: duplicate fence_id "
                                     f"(features {seen[fence.fence_id]} and {i})")
                seen[fence.fence_id] = i
                fences.append(fence)
        except FenceError:
            rings.compile()  # an error in the rings gathered before this one comes first
            raise
        for part, i in zip(rings.compile(), rings.part_fence, strict=True):
            fences[i].items.append(part)
        for fence in fences:
            fence.key = _key(fence.items)
        return cls(fences)

    @classmethod
    def from_file(cls, path: str | PathLike) -> FenceSet:
        """Load a GeoJSON file; every error is a one-line FenceError naming the file."""
        try:
            with open(path, "rb") as fh:
                obj = orjson.loads(fh.read().removeprefix(codecs.BOM_UTF8))
        except OSError as e:
            raise FenceError(f"{path}: cannot read: {e.strerror or e}") from e
        except orjson.JSONDecodeError as e:
            reason = "nested too deeply" if str(e).startswith("depth limit") else e
            raise FenceError(f"{path}: invalid JSON: {reason}") from e
        try:
            return cls.from_geojson(obj)
        except FenceError as e:
            raise FenceError(f"{path}: {e}") from e

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, fence_id: str) -> int | None:
        """Fence number of an id, or None."""
        return self._pos.get(fence_id)

    def line(self, fence_id: str) -> np.ndarray | None:
        """A corridor's centre line, (n, 2) lon/lat vertices in order; None when the fence is
        unknown or not a corridor."""
        i = self._pos.get(fence_id)
        parts = [] if i is None else [it.line for it in self._fences[i].items
                                      if it.kind == CORRIDOR]
        if not parts:
            return None
        return np.concatenate([parts[0], *(p[1:] for p in parts[1:])])

    def contains(self, lon: np.ndarray, lat: np.ndarray, margin_m: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Every (point index, fence index) pair with the point inside the fence, sorted by
        point then fence. `margin_m` > 0 grows every fence by that many metres, < 0 shrinks
        it. Points with NaN coordinates are inside nothing."""
        lon = np.ascontiguousarray(lon, dtype=np.float64).ravel()
        lat = np.ascontiguousarray(lat, dtype=np.float64).ravel()
        if lon.shape != lat.shape:
            raise ValueError("lon and lat must have the same length")
        return contains_kernel(lon, lat, float(margin_m), self._geo, self._index(float(margin_m)))

    def distances_m(self, lon: float, lat: float) -> np.ndarray:
        """Distance in metres from a point to each fence (0 inside), on WGS-84."""
        return self._distances(lon, lat, np.ones(len(self), bool))

    def distance_m(self, lon: float, lat: float, fence_id: str) -> float:
        """Distance in metres from a point to one fence (0 inside)."""
        i = self.find(fence_id)
        if i is None:
            raise KeyError(fence_id)
        mask = np.zeros(len(self), bool)
        mask[i] = True
        return float(self._distances(lon, lat, mask)[mask][0])

    def nearest(self, lon: float, lat: float, kind: str) -> tuple[str, float] | None:
        """Nearest fence of a kind (e.g. 'cold_store') and its distance in metres (0 inside),
        or None when there is no fence of that kind."""
        mask = np.array([k == kind for k in self.kinds], bool)
        if not mask.any():
            return None
        d = np.where(mask, self._distances(lon, lat, mask), np.inf)
        i = int(np.argmin(d))
        return self.ids[i], float(d[i])

    def _index(self, margin: float) -> Index:
        """The grid for fences grown by `margin` metres (shrunk fences use the plain one)."""
        margin = max(margin, 0.0)
        if margin not in self._indexes:
            box = grow_boxes(*self._box, np.full(len(self._geo.item_fence), margin))
            self._indexes[margin] = build_index(self._geo, *box, self._cell, False)
        return self._indexes[margin]

    def _distances(self, lon: float, lat: float, mask: np.ndarray) -> np.ndarray:
        """Distances to the fences selected by mask (others are +inf)."""
        fence, ax, ay, bx, by, offset = self._edge_table()
        sel = mask[fence]
        fence, ax, ay, bx, by = fence[sel], ax[sel], ay[sel], bx[sel], by[sel]
        p = np.array(ecef(float(lon), float(lat)))
        a = np.stack(ecef(ax, ay), axis=1)
        ab = np.stack(ecef(bx, by), axis=1) - a
        ll = (ab * ab).sum(1)
        t = np.clip(((p - a) * ab).sum(1) / np.where(ll > 0, ll, 1.0), 0.0, 1.0)
        d = geodesic_m(float(lon), float(lat), ax + t * (bx - ax), ay + t * (by - ay))
        out = np.full(len(self), np.inf)
        np.minimum.at(out, fence, d)
        out = np.maximum(out - offset, 0.0)
        _, inside = self.contains(np.array([lon]), np.array([lat]))
        out[inside] = 0.0
        return np.where(mask, out, np.inf)

    def _edge_table(self) -> tuple[np.ndarray, ...]:
        """Boundary pieces of every fence (corridor and circle: centre line / centre point)
        as (fence, a_lon, a_lat, b_lon, b_lat) arrays, plus the per-fence offset in metres."""
        if self._edges is None:
            fence, lines = [], []
            offset = np.zeros(len(self))
            for i, f in enumerate(self._fences):
                for item in f.items:
                    offset[i] = item.size
                    if item.kind == POLYGON:
                        parts = [densify(r[:, 0], r[:, 1], PIECE_M) for r in item.rings]
                    elif item.kind == CORRIDOR:
                        parts = [densify(item.line[:, 0], item.line[:, 1], PIECE_M)]
                    else:
                        parts = [(np.full(2, item.lon0), np.full(2, item.lat_lo))]
                    for x, y in parts:
                        lines.append(np.column_stack([x[:-1], y[:-1], x[1:], y[1:]]))
                        fence.append(np.full(x.size - 1, i))
            t = np.concatenate(lines) if lines else np.zeros((0, 4))
            f = np.concatenate(fence) if fence else np.zeros(0, np.int64)
            self._edges = (f, t[:, 0], t[:, 1], t[:, 2], t[:, 3], offset)
        return self._edges


def _parse_feature(i: int, feature: Any, rings: _Rings) -> _Fence:
    """A feature's properties checked, and its geometry: a circle's or corridor's items, or a
    polygon's rings handed to `rings` (its items come later from `rings.compile`)."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise FenceError(f"feature {i}: not a GeoJSON Feature")
    props = feature.get("properties") or {}
    fid = props.get("fence_id") if isinstance(props, dict) else None
    if not isinstance(fid, str) or not fid:
        raise FenceError(f"feature {i}: missing or non-string properties.fence_id")

    def fail(problem: str) -> FenceError:
        return FenceError(f"fence {fid!r}: {problem}")

    name, kind, dwell = props.get("name"), props.get("kind"), props.get("dwell_max_min")
    if name is not None and not isinstance(name, str):
        raise fail("name must be a string")
    if kind is not None and kind not in KINDS:
        raise fail(f"unknown kind {_brief(kind)} (expected one of {', '.join(KINDS)})")
    if dwell is not None and not (_number(dwell) and dwell >= 0):
        raise fail("dwell_max_min must be a non-negative number")
    geom = feature.get("geometry")
    gtype = geom.get("type") if isinstance(geom, dict) else None
    coords = geom.get("coordinates") if isinstance(geom, dict) else None
    items: list[_Item] = []
    if gtype == "Polygon":
        rings.add_part(i, coords, fail)
        rings.done = i + 1
    elif gtype == "MultiPolygon":
        if not isinstance(coords, list | tuple) or not coords:
            raise fail("MultiPolygon needs at least one polygon")
        for c in coords:
            rings.add_part(i, c, fail)
        rings.done = i + 1
    elif gtype == "Point":
        items = [_circle(coords, props.get("radius_m"), fail)]
    elif gtype == "LineString":
        items = _corridor(coords, props.get("width_m"), fail)
    else:
        raise fail(f"unsupported geometry {_brief(gtype)} (Polygon, MultiPolygon, Point with "
                   "radius_m or LineString with width_m)")
    return _Fence(fid, name, kind, math.nan if dwell is None else float(dwell), items)


def _brief(x: Any) -> str:
    """A JSON value for a one-line message: short scalars as repr, containers by type."""
    if isinstance(x, list | dict):
        return "(a JSON array)" if isinstance(x, list) else "(a JSON object)"
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(items: list[_Item]) -> str:
    """Fingerprint of a fence's compiled geometry (radius and width included)."""
    h = hashlib.blake2b(digest_size=16)
    for it in items:
        h.update(np.array([it.kind, it.lon0, it.size]).tobytes())
        for a in (it.rings or []) + ([] if it.line is None else [it.line]):
            h.update(np.ascontiguousarray(a).tobytes() + b"|")
    return h.hexdigest()


def _number(x: Any) -> bool:
    """A finite JSON number (not a boolean, which Python counts as an int)."""
    if isinstance(x, float):
        return math.isfinite(x)
    return isinstance(x, int) and not isinstance(x, bool) and abs(x) <= 1e300


def _positions(coords: Any, fail: Any, what: str, at_least: int) -> np.ndarray:
    """(n, 2) lon/lat array of checked positions."""
    xy = np.array(_flat(coords, fail, what, at_least), np.float64).reshape(-1, 2)
    _check_bounds(xy, coords, fail, what)
    return xy


def _flat(coords: Any, fail: Any, what: str, at_least: int) -> list[float]:
    """Lon, lat, lon, lat, ... of positions that are two or three JSON numbers. Types are
    checked before numpy sees them (it would take booleans and strings for numbers, and
    recurse into deeply nested lists): by the set of types present, and position by position
    only to name what is wrong."""
    if not isinstance(coords, list | tuple) or len(coords) < at_least:
        raise fail(f"{what} needs at least {at_least} positions")
    lengths = set(map(len, coords)) if set(map(type, coords)) <= {list, tuple} else None
    values = list(chain.from_iterable(coords)) if lengths and lengths <= {2, 3} else []
    if not values or not set(map(type, values)) <= {float}:  # ints, or something wrong
        _check_positions(coords, fail, what)
    return values if lengths == {2} else [v for p in coords for v in p[:2]]


def _check_bounds(xy: np.ndarray, coords: Any, fail: Any, what: str) -> None:
    """Raise unless every position lies in lon [-180, 180] / lat [-90, 90]."""
    if not (np.abs(xy) <= _LIMITS).all():  # NaN is not
        if not np.isfinite(xy).all():
            _check_positions(coords, fail, what)
        raise fail(f"{what} has a position outside lon [-180, 180] / lat [-90, 90]")


def _check_positions(coords: list | tuple, fail: Any, what: str) -> None:
    """Raise on the first position that is not two or three JSON numbers."""
    for j, p in enumerate(coords):
        if not isinstance(p, list | tuple) or len(p) not in (2, 3):
            raise fail(f"{what} position {j} is not [lon, lat] (wrong nesting)")
        if not all(_number(v) for v in p):
            raise fail(f"coordinates must be numbers: {what} position {j} is not [lon, lat] "
                       "numbers (no booleans, NaN or Infinity)")


def _unwrap(lon: np.ndarray, seam: bool) -> np.ndarray:
    """Longitudes made continuous: jumps over 180 degrees cross the antimeridian (unless
    `seam` and both ends lie on +-180, i.e. the edge runs along the antimeridian)."""
    if np.ptp(lon) <= 180:  # no jump can be over 180 degrees (most fences)
        return lon
    d = np.diff(lon)
    turns = np.where(d > 180, -1, np.where(d < -180, 1, 0))
    if seam:
        turns[(np.abs(lon[:-1]) == 180) & (np.abs(lon[1:]) == 180)] = 0
    return lon + 360.0 * np.concatenate([[0], np.cumsum(turns)])  # exact where no turn


def _closed_ring(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """A closed ring whose longitudes span over 180 degrees made continuous across the
    antimeridian; one that then winds once around a pole is closed through that pole.
    None when it winds around the globe more than once."""
    lon = _unwrap(lon, seam=True)
    if lon[-1] != lon[0]:
        if abs(lon[-1] - lon[0]) > 360:
            return None
        pole = 90.0 if lat.mean() >= 0 else -90.0
        lon = np.append(lon, [lon[-1], lon[0], lon[0]])
        lat = np.append(lat, [pole, pole, lat[0]])
    return lon, lat


class _Rings:
    """The polygon rings of a fence file, gathered feature by feature and then checked and
    compiled all at once: per-ring numpy calls and per-fence shapely calls would cost more
    than the work. `compile` raises the error the fences' own checks, run one by one in file
    order, would have met first."""

    def __init__(self) -> None:
        self.values: list[float] = []  # lon, lat of every position, ring after ring
        self.count: list[int] = []  # positions per ring
        self.coords: list[Any] = []  # each ring as given, to word an error
        self.what: list[str] = []  # "outer ring" or "hole j"
        self.ring_part: list[int] = []
        self.part_fence: list[int] = []  # fence number (in the file) of each part
        self.fail: dict[int, Any] = {}  # fence number -> its error maker
        self.done = 0  # the polygon fences before this number are complete

    def add_part(self, fence: int, coords: Any, fail: Any) -> None:
        """One polygon (outer ring, holes), its positions checked for type and nesting."""
        if not isinstance(coords, list | tuple) or not coords:
            raise fail("polygon needs at least an outer ring")
        self.fail[fence] = fail
        part = len(self.part_fence)
        self.part_fence.append(fence)
        for j, ring in enumerate(coords):
            what = "outer ring" if j == 0 else f"hole {j}"
            self.values += _flat(ring, fail, what, 4)
            self.count.append(len(ring))
            self.coords.append(ring)
            self.what.append(what)
            self.ring_part.append(part)

    def compile(self) -> list[_Item]:
        """The parts of the complete fences, checked (bounds, closure, winding around the
        globe, then validity as shapely sees it) and in their longitude frames."""
        if not self.count:
            return []
        xy = np.array(self.values, np.float64).reshape(-1, 2)
        count = np.array(self.count, np.int64)
        start = np.cumsum(count) - count
        ring_fence = np.array(self.part_fence, np.int64)[self.ring_part]
        inside = np.logical_and.reduceat((np.abs(xy) <= _LIMITS).all(1), start)
        closed = (xy[start] == xy[start + count - 1]).all(1)
        bad = np.flatnonzero(~(inside & closed))
        first_bad = int(bad[0]) if bad.size else count.size  # the first ring failing a check
        lon, lat = xy[:, 0], xy[:, 1]
        lo, hi = np.minimum.reduceat(lon, start), np.maximum.reduceat(lon, start)
        wrapped = {}  # ring -> (lon, lat) made continuous, for the rings that need it
        for r in np.flatnonzero(hi[:first_bad] - lo[:first_bad] > 180).tolist():
            s = start[r]
            wrapped[r] = _closed_ring(lon[s:s + count[r]], lat[s:s + count[r]])
            if wrapped[r] is None:
                first_bad = r
                break
        stop = self.done if first_bad == count.size else min(self.done, ring_fence[first_bad])
        n = int(np.searchsorted(ring_fence, stop))  # the rings of the complete fences before
        count = count[:n]
        lon, lat = lon[:count.sum()], lat[:count.sum()]
        if any(r < n for r in wrapped):
            lons, lats = np.split(lon, start[1:n]), np.split(lat, start[1:n])
            for r, (x, y) in wrapped.items():
                if r < n:
                    lons[r], lats[r] = x, y
            lon, lat = np.concatenate(lons), np.concatenate(lats)
            count = np.array([x.size for x in lons], np.int64)
        vert, parts = self._frames(lon, lat, count)
        self._check_valid(vert, count, len(parts))
        if first_bad < len(self.count):
            self._raise(xy, first_bad)
        return parts

    def _frames(self, lon: np.ndarray, lat: np.ndarray, count: np.ndarray
                ) -> tuple[np.ndarray, list[_Item]]:
        """The vertices of rings 0..len(count)-1 as (n, 2) lon/lat, each part's rings moved
        into the frame centred on its outer ring (a hole beyond the antimeridian moves by 360
        degrees too), and the parts."""
        if not count.size:
            return np.zeros((0, 2)), []
        start = np.cumsum(count) - count
        ring_part = np.array(self.ring_part[:count.size], np.int64)
        outer = np.flatnonzero(np.diff(ring_part, prepend=-1))  # first ring of each part
        lo, hi = np.minimum.reduceat(lon, start), np.maximum.reduceat(lon, start)
        centre = (lo[outer] + hi[outer]) / 2
        shift = wrap_lon.py_func(centre) - centre  # numpy: no compiled code to load
        c = centre[ring_part]
        lon = lon + np.repeat(shift[ring_part] - 360 * np.round(((lo + hi) / 2 - c) / 360), count)
        lat_lo, lat_hi = np.minimum.reduceat(lat, start), np.maximum.reduceat(lat, start)
        vert = np.column_stack([lon, lat])
        rings = [vert[s:s + k] for s, k in zip(start.tolist(), count.tolist(), strict=True)]
        ends = np.append(outer[1:], count.size).tolist()
        return vert, [_Item(POLYGON, c0 + s0, (h - low) / 2, y0, y1, rings=rings[a:b])
                      for a, b, c0, s0, h, low, y0, y1 in zip(
                          outer.tolist(), ends, centre, shift, hi[outer], lo[outer],
                          lat_lo[outer], lat_hi[outer], strict=True)]

    def _check_valid(self, vert: np.ndarray, count: np.ndarray, parts: int) -> None:
        """Raise on the first fence that is not a valid Polygon, or MultiPolygon when it has
        several parts (rings 0..len(count)-1, parts 0..parts-1)."""
        if not parts:
            return
        import shapely  # here: an engine without polygon fences does without it

        rings = shapely.linearrings(vert, indices=np.repeat(np.arange(count.size), count))
        polys = shapely.polygons(rings, indices=self.ring_part[:count.size])
        part_fence = np.array(self.part_fence[:parts], np.int64)
        fences, first, nparts = np.unique(part_fence, return_index=True, return_counts=True)
        geoms = polys[first]
        multi = nparts > 1
        if multi.any():
            several = multi[np.searchsorted(fences, part_fence)]
            geoms[multi] = shapely.multipolygons(polys[several], indices=np.repeat(
                np.arange(multi.sum()), nparts[multi]))
        invalid = np.flatnonzero(~shapely.is_valid(geoms))
        if invalid.size:
            geom = geoms[invalid[0]]
            raise self.fail[int(fences[invalid[0]])](
                f"invalid {geom.geom_type}: {shapely.is_valid_reason(geom)}")

    def _raise(self, xy: np.ndarray, r: int) -> None:
        """Raise ring r's error: bounds, closure, or winding around the globe."""
        fail, what = self.fail[self.part_fence[self.ring_part[r]]], self.what[r]
        s = sum(self.count[:r])
        ring = xy[s:s + self.count[r]]
        _check_bounds(ring, self.coords[r], fail, what)
        if not np.array_equal(ring[0], ring[-1]):
            raise fail(f"{what} is not closed (first and last positions differ)")
        raise fail(f"{what} winds around the globe more than once")


def _circle(coords: Any, radius: Any, fail: Any) -> _Item:
    if not (_number(radius) and radius > 0):
        raise fail("circle (Point) needs properties.radius_m > 0")
    lon, lat = _positions([coords], fail, "Point", 1)[0]
    return _Item(CIRCLE, lon, 0.0, lat, lat, size=float(radius))


def _corridor(coords: Any, width: Any, fail: Any) -> list[_Item]:
    if not (_number(width) and width > 0):
        raise fail("corridor (LineString) needs properties.width_m > 0")
    xy = _positions(coords, fail, "LineString", 2)
    lon, lat = _unwrap(xy[:, 0], seam=False), xy[:, 1]
    n = piece_counts(lon, lat, PIECE_M)
    group = (np.cumsum(n) - n) // CHUNK  # items: runs of segments, CHUNK pieces or so
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    items = []
    for s, e in zip(starts, np.append(starts[1:], n.size), strict=True):
        x, y = lon[s:e + 1], lat[s:e + 1]
        centre = (x.min() + x.max()) / 2
        shift = wrap_lon(centre) - centre
        items.append(_Item(CORRIDOR, centre + shift, (x.max() - x.min()) / 2, y.min(), y.max(),
                           size=width / 2, line=np.column_stack([x + shift, y])))
    return items


def _compile(fences: list[_Fence]) -> tuple[Geometry, tuple[np.ndarray, ...]]:
    """Flat arrays for the kernels, and the item boxes grown by their size."""
    items = [(i, it) for i, f in enumerate(fences) for it in f.items]
    rings = [r for _, it in items if it.kind == POLYGON for r in it.rings]
    lines = [it.line for _, it in items if it.kind == CORRIDOR]
    first, last = np.zeros(len(items), np.int64), np.zeros(len(items), np.int64)
    nr = nseg = 0
    for j, (_, it) in enumerate(items):
        if it.kind == POLYGON:
            first[j], nr = nr, nr + len(it.rings)
            last[j] = nr
        elif it.kind == CORRIDOR:
            first[j], nseg = nseg, nseg + len(it.line) - 1
            last[j] = nseg

    def col(name: str) -> np.ndarray:
        return np.array([getattr(it, name) for _, it in items], float)

    lon0, lat_lo = col("lon0"), col("lat_lo")
    size = col("size")
    vert = np.concatenate(rings) if rings else np.zeros((0, 2))
    kind = np.array([it.kind for _, it in items], np.int64)
    circle = kind == CIRCLE  # Earth-centred centres only for circles: no kernels to load else
    xyz, rho = np.zeros((len(items), 3)), np.zeros(len(items))
    if circle.any():
        m, n = radii(lat_lo[circle])
        xyz[circle] = np.stack(ecef(lon0[circle], lat_lo[circle]), axis=1)
        rho[circle] = np.sqrt(m * n)
    ring_start = np.cumsum([0] + [len(r) for r in rings]).astype(np.int64)
    ring_item = np.repeat(np.arange(len(items)), np.where(kind == POLYGON, last - first, 0))
    grid, band_start, band_edge, raster = polygon_grids(
        ring_item, ring_start, vert[:, 0], vert[:, 1], len(items))
    geo = Geometry(
        item_fence=np.array([i for i, _ in items], np.int64),
        item_type=kind,
        item_lon0=lon0,
        item_first=first,
        item_last=last,
        item_size=size,
        item_xyz=xyz,
        item_rho=rho,
        ring_start=ring_start,
        vx=np.ascontiguousarray(vert[:, 0]),
        vy=np.ascontiguousarray(vert[:, 1]),
        item_grid=grid,
        band_start=band_start,
        band_edge=band_edge,
        raster=raster,
        segment=(np.concatenate([corridor_segments(ln[:, 0], ln[:, 1],
                                                   piece_counts(ln[:, 0], ln[:, 1], PIECE_M))
                                 for ln in lines]) if lines else np.zeros((0, 9))),
    )
    box = grow_boxes(col("hw"), lat_lo, col("lat_hi"), size)
    return geo, box
