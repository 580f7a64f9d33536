"""Flat fence geometry, the spatial grid over it, and the Numba point-in-fence kernel.

A fence compiles to one or more *items*: a polygon part, a circle, or a chunk of a corridor.
Each item has a longitude frame centred on ``item_lon0`` (its vertices may pass +-180 there);
a point is tested at the longitude ``lon + 360 k`` that falls in that frame, so items crossing
the antimeridian need no special case.

The grid maps uniform lon/lat cells to the items whose bounding box touches them; cells are
grouped in blocks of BLOCK x BLOCK and a small hash table finds a cell's block. Polygon parts
are left out of cells they do not reach, and marked SURE in cells they cover, so most points need
no polygon test. Each part also has a coarse raster (OUTSIDE / INSIDE / BOUNDARY cells) and
latitude bands of edges: only points in BOUNDARY cells run an even-odd test, over one band.
The kernel is bound by memory latency, so what it reads per candidate is kept small (one
32-byte grid entry, 2-bit rasters) to stay in the CPU cache, and points go through it in
batches, one step at a time, so that the reads of different points overlap.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from chainsight import jit

from .geodesy import R_MAX, R_MIN, RAD, chord_of_arc, ecef, radii, wrap_lon

POLYGON, CIRCLE, CORRIDOR = 0, 1, 2
OUTSIDE, INSIDE, BOUNDARY = 0, 1, 2  # polygon raster cells
TEST, SURE, DROP = 0, 1, 2  # grid entries: test the item, the cell is inside it, or neither
PAD = 1e-9  # degrees added around every bounding box
BLOCK_BITS = 4
BLOCK = 1 << BLOCK_BITS  # grid blocks are BLOCK x BLOCK cells
CHUNK = 256  # points per batch in the point-in-fence kernel (at most)
BATCH_ENTRIES = 1 << 14  # grid entries per batch (one point's cell may add more)
KEY_SHIFT = 28  # block table slots: key << KEY_SHIFT | block number
FURTHER = -2  # _block_fast: the key may be further along its probe sequence
RASTER_PER_EDGE = 8  # polygon raster cells per edge (64..16384 cells a part)
_MULT = np.int64(-7046029254386353131)  # 2**64 / golden ratio, as int64 (Fibonacci hashing)


class Geometry(NamedTuple):
    """All fences as flat arrays (one row per item, ring, vertex, band or corridor segment)."""

    item_fence: np.ndarray  # int64: fence index of each item (non-decreasing)
    item_type: np.ndarray  # int64: POLYGON, CIRCLE or CORRIDOR
    item_lon0: np.ndarray  # float64: centre longitude of the item's frame
    item_first: np.ndarray  # int64: first ring (polygon) or segment (corridor)
    item_last: np.ndarray  # int64: one past the last ring / segment
    item_size: np.ndarray  # float64: circle radius or corridor half-width, metres
    item_xyz: np.ndarray  # float64 (items, 3): circle centre, Earth-centred (others: 0)
    item_rho: np.ndarray  # float64: circle, Gaussian radius of curvature at the centre (others: 0)
    ring_start: np.ndarray  # int64 (rings + 1): vertex offsets; rings are stored closed
    vx: np.ndarray  # float64: vertex longitude in its item's frame
    vy: np.ndarray  # float64: vertex latitude
    item_grid: np.ndarray  # float64 (items, 8), polygon parts: first band, rows, latitude of
    # row 0, rows per degree, columns, longitude of column 0, columns per degree, first cell
    band_start: np.ndarray  # int64 (bands + 1): offsets into band_edge
    band_edge: np.ndarray  # float64 (entries, 5): y1, y2, x1, dx/dy, max(x1, x2) of the edges
    # overlapping a band, by decreasing max(x1, x2)
    raster: np.ndarray  # uint8, 4 cells a byte: OUTSIDE, INSIDE or BOUNDARY
    segment: np.ndarray  # float64 (segments, 9): corridor segments, see corridor_segments()


class Index(NamedTuple):
    """Grid of the items whose bounding box (grown by one margin) touches each cell."""

    cell: float  # cell size in degrees, 360 / nx
    nx: int
    ny: int
    nbx: int  # blocks per row of the grid
    bits: int  # the block table has 2**bits slots
    table: np.ndarray  # int64 slots: block key << KEY_SHIFT | block number (-1 = empty)
    cell_start: np.ndarray  # int32 (blocks * BLOCK**2 + 1): offsets into entry
    entry: np.ndarray  # ENTRY records, items ascending within a cell


# What the kernel reads first for a candidate, in one 32-byte record: the item's box (float32,
# rounded outwards; longitudes as seen from the entry's cell, so +-180 needs no care), item,
# fence, type, TEST or SURE, and `turns`: the item's frame is lon + 360 * turns (FULL: the item
# is as wide as the world, find its frame from item_lon0).
ENTRY = np.dtype([("lon_lo", "f4"), ("lon_hi", "f4"), ("lat_lo", "f4"), ("lat_hi", "f4"),
                  ("item", "i4"), ("fence", "i4"), ("kind", "i2"), ("state", "i2"),
                  ("turns", "i2"), ("pad", "i2")], align=True)
FULL = 99


def corridor_segments(lon: np.ndarray, lat: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Segments of a corridor line: x0, y0, x1, y1, the number of pieces it is cut into, and a
    bounding sphere (Earth-centred centre, radius in metres: no shorter than the segment)."""
    x0, y0, x1, y1 = lon[:-1], lat[:-1], lon[1:], lat[1:]
    centre = np.stack(ecef((x0 + x1) / 2, (y0 + y1) / 2), axis=1)
    length = np.hypot(x1 - x0, y1 - y0) * RAD * R_MAX  # N cos(lat), M <= R_MAX
    return np.column_stack([x0, y0, x1, y1, pieces, centre, length])


def polygon_grids(ring_item: np.ndarray, ring_start: np.ndarray, vx: np.ndarray, vy: np.ndarray,
                  n_items: int) -> tuple[np.ndarray, ...]:
    """A small raster over each polygon part's box: rows are latitude bands listing (a copy of)
    the edges that overlap them, and each cell is OUTSIDE, INSIDE or BOUNDARY. A point in an
    OUTSIDE / INSIDE cell needs no edge test; otherwise only its band's edges are read.
    Returns Geometry's item_grid, band_start, band_edge and raster."""
    nvert = np.diff(ring_start)
    edge = np.delete(np.arange(vy.size), ring_start[1:] - 1)  # every vertex but ring ends
    edge_item = np.repeat(ring_item, nvert - 1)
    nedge = np.bincount(ring_item, nvert - 1, minlength=n_items).astype(np.int64)
    y1, x1 = vy[edge], vx[edge]
    box = [np.full(n_items, v) for v in (np.inf, -np.inf, np.inf, -np.inf)]
    for b, op, v in zip(box, (np.minimum, np.maximum) * 2, (y1, y1, x1, x1), strict=True):
        op.at(b, edge_item, v)
    has = nedge > 0
    lat0, lat1, x0, xend = (np.where(has, b, 0.0) for b in box)
    h, w = lat1 - lat0, (xend - x0) * np.cos((lat0 + lat1) / 2 * RAD)
    cells = np.clip(RASTER_PER_EDGE * nedge, 64, 16384)
    nrow = np.where(has, np.clip(np.round(np.sqrt(cells * h / np.maximum(w, 1e-12))), 1, 256), 0)
    ncol = np.where(has, np.clip(np.round(cells / np.maximum(nrow, 1)), 1, 256), 0)
    rscale, cscale = nrow / np.maximum(h, 1e-12), ncol / np.maximum(xend - x0, 1e-12)
    row0 = np.cumsum(nrow) - nrow
    cell0 = np.cumsum(nrow * ncol) - nrow * ncol

    item_grid = np.column_stack([row0, nrow, lat0, rscale, ncol, x0, cscale, cell0])
    raster = np.zeros((int((nrow * ncol).sum()) + 3) // 4, np.uint8)
    band_start, band_edge = _bands_and_raster(item_grid, edge_item, edge, vx, vy, raster)
    return item_grid, band_start, band_edge, raster


@jit.helper
def _raster_get(raster: np.ndarray, i: int) -> int:
    return (raster[i >> 2] >> ((i & 3) * 2)) & 3


@njit(cache=True)
def _bands_and_raster(grid: np.ndarray, edge_item: np.ndarray, edge: np.ndarray,
                      vx: np.ndarray, vy: np.ndarray, raster: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Geometry's band_start and band_edge for the polygon parts' edges (`edge`: the first
    vertex of each, `edge_item`: its part), and their raster (one compiled function to load
    at start-up rather than two)."""
    band_start, band_edge = _bands(grid, edge_item, edge, vx, vy)
    _rasterize(grid, edge_item, edge, vx, vy, band_start, band_edge, raster)
    return band_start, band_edge


@njit(cache=True)
def _bands(grid: np.ndarray, edge_item: np.ndarray, edge: np.ndarray, vx: np.ndarray,
           vy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each part's edges listed in the bands (raster rows) they overlap, by decreasing
    max(x1, x2) within a band and else in edge order."""
    n = edge.size
    first, count = np.empty(n, np.int64), np.empty(n, np.int64)  # each edge's bands
    nbands = 0
    for it in range(grid.shape[0]):
        nbands += int(grid[it, 1])
    band_start = np.zeros(nbands + 1, np.int64)
    for k in range(n):
        it, e = edge_item[k], edge[k]
        lat0, rs, top = grid[it, 2], grid[it, 3], grid[it, 1] - 1.0
        lo, hi = min(vy[e], vy[e + 1]), max(vy[e], vy[e + 1])
        r0 = int(min(max(np.floor((lo - lat0) * rs), 0.0), top))
        r1 = int(min(max(np.floor((hi - lat0) * rs), 0.0), top))
        first[k], count[k] = int(grid[it, 0]) + r0, r1 - r0 + 1
        for b in range(first[k], first[k] + count[k]):
            band_start[b + 1] += 1
    fill = np.empty(nbands, np.int64)
    for b in range(nbands):
        fill[b] = band_start[b]
        band_start[b + 1] += band_start[b]
    entry, xmax = np.empty(band_start[-1], np.int64), np.empty(band_start[-1])
    for k in range(n):  # by edge, so each band's entries start in edge order
        e = edge[k]
        for b in range(first[k], first[k] + count[k]):
            entry[fill[b]], xmax[fill[b]] = e, max(vx[e], vx[e + 1])
            fill[b] += 1
    _sort_bands(band_start, entry, xmax)
    band_edge = np.empty((entry.size, 5))
    for j in range(entry.size):
        e = entry[j]
        dy = vy[e + 1] - vy[e]
        band_edge[j, 0], band_edge[j, 1], band_edge[j, 2] = vy[e], vy[e + 1], vx[e]
        band_edge[j, 3] = (vx[e + 1] - vx[e]) / dy if dy != 0 else 0.0
        band_edge[j, 4] = xmax[j]
    return band_start, band_edge


@njit(cache=True)
def _sort_bands(band_start: np.ndarray, entry: np.ndarray, xmax: np.ndarray) -> None:
    """Each band's entries by decreasing xmax, in their order where equal (a bottom-up merge
    sort: bands may be long, and np.argsort would double the kernel's size)."""
    spare_entry, spare_x = np.empty_like(entry), np.empty_like(xmax)
    for b in range(band_start.size - 1):
        s, t = band_start[b], band_start[b + 1]
        width = 1
        while width < t - s:
            for lo in range(s, t, 2 * width):
                mid, hi = min(lo + width, t), min(lo + 2 * width, t)
                i, j = lo, mid
                for k in range(lo, hi):
                    if j >= hi or (i < mid and xmax[i] >= xmax[j]):
                        spare_entry[k], spare_x[k] = entry[i], xmax[i]
                        i += 1
                    else:
                        spare_entry[k], spare_x[k] = entry[j], xmax[j]
                        j += 1
            for k in range(s, t):
                entry[k], xmax[k] = spare_entry[k], spare_x[k]
            width *= 2


@njit(cache=True)
def _rasterize(grid: np.ndarray, edge_item: np.ndarray, edge: np.ndarray, vx: np.ndarray,
               vy: np.ndarray, band_start: np.ndarray, band_edge: np.ndarray,
               raster: np.ndarray) -> None:
    """Mark the cells any edge comes near (within 1e-6 cell) BOUNDARY, then classify the
    others by an even-odd test at their centre."""
    eps = 1e-6
    for k in range(edge.size):
        it, e = edge_item[k], edge[k]
        lat0, rs, x0, cs = grid[it, 2], grid[it, 3], grid[it, 5], grid[it, 6]
        ncol = int(grid[it, 4])
        y1, y2, x1, x2 = vy[e], vy[e + 1], vx[e], vx[e + 1]
        lo, hi = min(y1, y2), max(y1, y2)
        ra = max(int(np.floor((lo - lat0) * rs - eps)), 0)
        rb = min(int(np.floor((hi - lat0) * rs + eps)), int(grid[it, 1]) - 1)
        for r in range(ra, rb + 1):
            ya = min(max(lat0 + (r - eps) / rs, lo), hi)
            yb = min(max(lat0 + (r + 1 + eps) / rs, lo), hi)
            xa, xb = x1, x2
            if y1 != y2:
                xa = x1 + (ya - y1) * (x2 - x1) / (y2 - y1)
                xb = x1 + (yb - y1) * (x2 - x1) / (y2 - y1)
            ca = max(int(np.floor((min(xa, xb) - x0) * cs - eps)), 0)
            cb = min(int(np.floor((max(xa, xb) - x0) * cs + eps)), ncol - 1)
            for c in range(int(grid[it, 7]) + r * ncol + ca, int(grid[it, 7]) + r * ncol + cb + 1):
                raster[c >> 2] |= BOUNDARY << ((c & 3) * 2)
    for it in range(grid.shape[0]):
        row0, nrow, lat0, rs = int(grid[it, 0]), int(grid[it, 1]), grid[it, 2], grid[it, 3]
        ncol, x0, cs, cell0 = int(grid[it, 4]), grid[it, 5], grid[it, 6], int(grid[it, 7])
        for r in range(nrow):
            for c in range(ncol):
                i = cell0 + r * ncol + c
                x, y = x0 + (c + 0.5) / cs, lat0 + (r + 0.5) / rs
                if _raster_get(raster, i) != BOUNDARY and _crossings(
                        band_start, band_edge, row0 + r, x, y):
                    raster[i >> 2] |= INSIDE << ((i & 3) * 2)


def grow_boxes(hw: np.ndarray, lat_lo: np.ndarray, lat_hi: np.ndarray, metres: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounding boxes grown by a distance in metres (conservatively), plus PAD."""
    ang = np.minimum(metres / R_MIN, np.pi / 2)
    lo, hi = lat_lo - ang / RAD - PAD, lat_hi + ang / RAD + PAD
    cos_pole = np.cos(np.minimum(np.maximum(np.abs(lo), np.abs(hi)), 90.0) * RAD)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sin(ang) / cos_pole
    dlon = np.where(ratio < 1, np.arcsin(np.minimum(ratio, 1)) / RAD * 1.01, 180.0)
    polar = (lo <= -90) | (hi >= 90)
    hw = np.where(polar, 180.0, np.minimum(hw + dlon + PAD, 180.0))
    return hw, np.maximum(lo, -90.0), np.minimum(hi, 90.0)


def choose_cell(hw: np.ndarray, lat_lo: np.ndarray, lat_hi: np.ndarray) -> float:
    """Cell size a little under the median item size (fastest in benchmarks), coarsened
    until the grid stays small."""
    if hw.size == 0:
        return 360.0
    size = 0.7 * float(np.median(np.maximum(2 * hw, lat_hi - lat_lo)))
    nx = int(np.clip(round(360.0 / max(size, 1e-4)), 2, 1 << 22))
    while nx > 2 and _cells(np.zeros_like(hw), hw, lat_lo, lat_hi, 360.0 / nx)[0].sum() > (
            8 * hw.size + 100_000):
        nx //= 2
    return 360.0 / nx


def _cells(lon0: np.ndarray, hw: np.ndarray, lat_lo: np.ndarray, lat_hi: np.ndarray,
           cell: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per box: number of cells, first column (not wrapped), number of columns, first row;
    a box as wide as the world gets every column, starting at 0."""
    nx, ny = _dims(cell)
    inv = nx / 360.0  # the kernel finds cells the same way
    c0 = np.floor((lon0 - hw + 180.0) * inv).astype(np.int64)
    ncol = np.floor((lon0 + hw + 180.0) * inv).astype(np.int64) - c0 + 1
    full = ncol >= nx
    c0, ncol = np.where(full, 0, c0), np.where(full, nx, ncol)
    r0 = np.clip(np.floor((lat_lo + 90.0) * inv), 0, ny - 1).astype(np.int64)
    r1 = np.clip(np.floor((lat_hi + 90.0) * inv), 0, ny - 1).astype(np.int64)
    return ncol * (r1 - r0 + 1), c0, ncol, r0


def _dims(cell: float) -> tuple[int, int]:
    nx = round(360.0 / cell)
    return nx, -(-nx // 2)


def build_index(g: Geometry, hw: np.ndarray, lat_lo: np.ndarray, lat_hi: np.ndarray,
                cell: float, exact: bool) -> Index:
    """Grid of the item boxes (item_lon0 +- hw, lat_lo..lat_hi) with that cell size. When the
    boxes are the exact fences (`exact`), a polygon part that does not reach into a cell is
    left out of it, and one that covers the cell is marked SURE there."""
    nx, ny = _dims(cell)
    lon0 = g.item_lon0
    count, c0, ncol, r0 = _cells(lon0, hw, lat_lo, lat_hi, cell)
    items = np.repeat(np.arange(hw.size), count)
    k = np.arange(items.size) - np.repeat(np.cumsum(count) - count, count)
    col = c0[items] + k % ncol[items]  # not wrapped yet
    row = r0[items] + k // ncol[items]
    full = ncol[items] >= nx
    turns = np.where(full, FULL, col // nx)  # the box moved next to the wrapped cell
    shift = np.where(full, 0, -360.0 * turns)
    lon_lo = np.where(full, -np.inf, lon0[items] - hw[items] + shift)
    lon_hi = np.where(full, np.inf, lon0[items] + hw[items] + shift)
    col %= nx
    state = np.zeros(items.size, np.int64)
    if exact:
        state = _classify(items, col, row, shift, full, cell, g.item_type, g.item_grid, g.raster)
        keep = state != DROP
        items, col, row, state = items[keep], col[keep], row[keep], state[keep]
        lon_lo, lon_hi, turns = lon_lo[keep], lon_hi[keep], turns[keep]
    nbx = -(-nx // BLOCK)
    blocks, block = np.unique((row // BLOCK) * nbx + col // BLOCK, return_inverse=True)
    cells = (block * BLOCK + row % BLOCK) * BLOCK + col % BLOCK
    order = np.lexsort((items, cells))
    cell_start = np.searchsorted(cells[order], np.arange(blocks.size * BLOCK * BLOCK + 1))
    entry = np.zeros(items.size, ENTRY)
    for name, value in (("lon_lo", _f32(lon_lo, -1)), ("lon_hi", _f32(lon_hi, 1)),
                        ("lat_lo", _f32(lat_lo[items], -1)), ("lat_hi", _f32(lat_hi[items], 1)),
                        ("item", items), ("fence", g.item_fence[items]),
                        ("kind", g.item_type[items]), ("state", state), ("turns", turns)):
        entry[name] = value[order]
    if blocks.size >= 1 << KEY_SHIFT:
        raise ValueError(f"geofence grid too large: {blocks.size:,} blocks")
    bits = max(1, int(np.ceil(np.log2(max(4 * blocks.size, 2)))))  # at most a quarter full
    return Index(cell, nx, ny, nbx, bits, _hash_table(blocks, bits),
                 cell_start.astype(np.int32), entry)


@njit(cache=True)
def _classify(items: np.ndarray, col: np.ndarray, row: np.ndarray, shift: np.ndarray,
              full: np.ndarray, cell: float, item_type: np.ndarray, grid: np.ndarray,
              raster: np.ndarray) -> np.ndarray:
    """TEST, SURE or DROP for each (cell, item) entry, from the raster cells the grid cell
    overlaps (widened by 1e-6 raster cell against rounding)."""
    eps = 1e-6
    out = np.zeros(items.size, np.int64)
    for k in range(items.size):
        it = items[k]
        if item_type[it] != POLYGON or full[k]:
            continue
        nrow, ncol, cell0 = int(grid[it, 1]), int(grid[it, 4]), int(grid[it, 7])
        x = col[k] * cell - 180.0 - shift[k]  # west side of the cell, in the item's frame
        y = row[k] * cell - 90.0
        ca, cb = (x - grid[it, 5]) * grid[it, 6] - eps, (x + cell - grid[it, 5]) * grid[it, 6] + eps
        ra, rb = (y - grid[it, 2]) * grid[it, 3] - eps, (y + cell - grid[it, 2]) * grid[it, 3] + eps
        all_in = ca >= 0 and ra >= 0 and cb < ncol and rb < nrow
        all_out = True
        for r in range(max(int(np.floor(ra)), 0), min(int(np.floor(rb)), nrow - 1) + 1):
            for c in range(max(int(np.floor(ca)), 0), min(int(np.floor(cb)), ncol - 1) + 1):
                v = _raster_get(raster, cell0 + r * ncol + c)
                all_in &= v == INSIDE
                all_out &= v == OUTSIDE
        out[k] = SURE if all_in else DROP if all_out else TEST
    return out


def _f32(x: np.ndarray, direction: int) -> np.ndarray:
    """float32 rounded away from the box (down for lower bounds, up for upper ones)."""
    y = x.astype(np.float32)
    worse = y > x if direction < 0 else y < x
    return np.where(worse, np.nextafter(y, np.float32(direction * np.inf)), y)


@njit(cache=True, inline="always")
def _slot(key: int, bits: int) -> int:
    return ((key * _MULT) >> (64 - bits)) & ((1 << bits) - 1)


@njit(cache=True)
def _hash_table(keys: np.ndarray, bits: int) -> np.ndarray:
    """Open addressing (linear probing) table of key -> position in keys, both in one int64
    (keys < 2**35: at most 2**22 x 2**21 cells; positions < 2**KEY_SHIFT)."""
    mask = (1 << bits) - 1
    table = np.full(1 << bits, -1, np.int64)
    for j in range(keys.size):
        h = _slot(keys[j], bits)
        while table[h] >= 0:
            h = (h + 1) & mask
        table[h] = (keys[j] << KEY_SHIFT) | j
    return table


@jit.helper
def _block_fast(table: np.ndarray, bits: int, key: int) -> int:
    """Block number of `key` if it is in its slot or the next (nearly always: the table is at
    most a quarter full), read without branching; -1 if absent, or FURTHER."""
    mask = (1 << bits) - 1
    h = _slot(key, bits)
    h1 = (h + 1) & mask
    s0, s1 = table[h], table[h1]
    further = FURTHER if (s0 >= 0) & (s1 >= 0) else -1
    low = (1 << KEY_SHIFT) - 1
    return s0 & low if s0 >> KEY_SHIFT == key else s1 & low if s1 >> KEY_SHIFT == key else further


@jit.helper
def _block(table: np.ndarray, bits: int, key: int) -> int:
    """Block number of `key` (-1 if absent)."""
    block = _block_fast(table, bits, key)
    if block != FURTHER:
        return block
    mask = (1 << bits) - 1
    h = (_slot(key, bits) + 2) & mask
    while table[h] >= 0:
        if table[h] >> KEY_SHIFT == key:
            return table[h] & ((1 << KEY_SHIFT) - 1)
        h = (h + 1) & mask
    return -1


@njit(cache=True, inline="always")
def _cell_of(x: float, y: float, inv: float, nx: int, ny: int, nbx: int) -> tuple[int, int]:
    """Block key and cell within the block of a point (x in [-180, 180))."""
    cx = min(int((x + 180.0) * inv), nx - 1)
    cy = min(max(int((y + 90.0) * inv), 0), ny - 1)
    key = (cy >> BLOCK_BITS) * nbx + (cx >> BLOCK_BITS)
    return key, ((cy & (BLOCK - 1)) << BLOCK_BITS) + (cx & (BLOCK - 1))


@njit(cache=True, inline="always")
def _seg_d2(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """Squared distance from p to segment ab (plane)."""
    vx, vy, wx, wy = bx - ax, by - ay, px - ax, py - ay
    ll = vx * vx + vy * vy
    t = 0.0 if ll == 0.0 else min(max((wx * vx + wy * vy) / ll, 0.0), 1.0)
    dx, dy = wx - t * vx, wy - t * vy
    return dx * dx + dy * dy


@jit.helper
def _near_edge(first: int, last: int, ring_start: np.ndarray, vx: np.ndarray, vy: np.ndarray,
               x: float, y: float, metres: float) -> bool:
    """Is (x, y) within `metres` of the boundary of rings first..last (local scale at the
    point)?"""
    m, n = radii(y)
    kx, ky = n * np.cos(y * RAD) * RAD, m * RAD
    for r in range(first, last):
        for e in range(ring_start[r], ring_start[r + 1] - 1):
            ay, by = (vy[e] - y) * ky, (vy[e + 1] - y) * ky
            if min(ay, by) > metres or max(ay, by) < -metres:
                continue
            ax, bx = (vx[e] - x) * kx, (vx[e + 1] - x) * kx
            if _seg_d2(0.0, 0.0, ax, ay, bx, by) <= metres * metres:
                return True
    return False


@jit.helper
def _crossings(band_start: np.ndarray, band_edge: np.ndarray, band: int, x: float, y: float
               ) -> bool:
    """Even-odd count of the band's edges crossed by a ray from (x, y) towards +x."""
    inside = False
    e = band_edge
    for k in range(band_start[band], band_start[band + 1]):
        if e[k, 4] < x:  # this and all further edges lie left of the point
            break
        inside ^= ((e[k, 0] > y) != (e[k, 1] > y)) & (x < e[k, 2] + (y - e[k, 0]) * e[k, 3])
    return inside


@jit.helper
def _raster_cell(grid: np.ndarray, raster: np.ndarray, it: int, x: float, y: float
                 ) -> tuple[int, int]:
    """Polygon part's raster cell at (x, y): OUTSIDE, INSIDE or BOUNDARY, and its band."""
    nrow, ncol = int(grid[it, 1]), int(grid[it, 4])
    r = int(np.floor((y - grid[it, 2]) * grid[it, 3]))
    c = int(np.floor((x - grid[it, 5]) * grid[it, 6]))
    if r < 0 or r > nrow or c < 0 or c > ncol:
        return OUTSIDE, 0
    r, c = min(r, nrow - 1), min(c, ncol - 1)
    return _raster_get(raster, int(grid[it, 7]) + r * ncol + c), int(grid[it, 0]) + r


@njit(cache=True, inline="always")
def _window(v0: float, dv: float, n: int, v: float, r: float, lo: int, hi: int
            ) -> tuple[int, int]:
    """Pieces k in lo..hi-1 whose middle, v0 + (k + 0.5) / n * dv, may lie within r of v
    (one piece of slack each side against rounding)."""
    if dv == 0.0:
        return (lo, hi) if abs(v - v0) <= r else (lo, lo)
    a, b = (v - r - v0) / dv * n - 0.5, (v + r - v0) / dv * n - 0.5
    a, b = min(max(min(a, b), -1.0), n + 1.0), min(max(max(a, b), -1.0), n + 1.0)
    return max(lo, int(np.floor(a)) - 1), min(hi, int(np.ceil(b)) + 2)


@jit.helper
def _near_line(size: float, first: int, last: int, segment: np.ndarray, lon: float, lat: float
               ) -> bool:
    """Point within `size` metres of corridor segments first..last-1. Segment s is cut into
    n pieces linearly in lon/lat (as geodesy.densify does); each piece is measured on the
    tangent plane at its middle. Pieces are made on the fly, and only those that latitude and
    longitude windows leave possible, so a long segment costs memory like a short one."""
    px, py, pz = ecef(lon, lat)
    for s in range(first, last):
        q = segment[s]
        if (px - q[5]) ** 2 + (py - q[6]) ** 2 + (pz - q[7]) ** 2 > (q[8] + size) ** 2:
            continue
        x0, y0, x1, y1, n = q[0], q[1], q[2], q[3], int(q[4])
        dx, dy = x1 - x0, y1 - y0
        # q[8] / n bounds the reach of every piece; a piece can only count if the point is
        # within reach + size of its middle (chord), so `ang` degrees of latitude (arc < 2 chords)
        ang = 2.0 * (q[8] / n + size) / R_MIN / RAD
        k0, k1 = _window(y0, dy, n, lat, ang, 0, n)
        top = abs(lat) + 2.0 * ang  # the arc stays below this latitude
        if top < 89.0 and k0 < k1:
            dlon = ang / np.cos(top * RAD)
            if abs(dx) / 2 + dlon < 180.0:  # then the point's longitude near the segment is
                xp = lon + 360.0 * np.round((x0 + dx / 2 - lon) / 360.0)  # unambiguous
                k0, k1 = _window(x0, dx, n, xp, dlon, k0, k1)
        for k in range(k0, k1):
            ax, ay = x0 + k / n * dx, y0 + k / n * dy
            bx, by = (x0 + (k + 1) / n * dx, y0 + (k + 1) / n * dy) if k + 1 < n else (x1, y1)
            mx, my = (ax + bx) / 2, (ay + by) / 2
            ox, oy, oz = ecef(mx, my)
            sl, cl = np.sin(mx * RAD), np.cos(mx * RAD)
            sp, cp = np.sin(my * RAD), np.cos(my * RAD)
            ex, ey = -sl, cl  # east unit vector (no z part)
            nx, ny, nz = -sp * cl, -sp * sl, cp  # north
            a0, a1, a2 = ecef(ax, ay)
            b0, b1, b2 = ecef(bx, by)
            a0, a1, a2, b0, b1, b2 = a0 - ox, a1 - oy, a2 - oz, b0 - ox, b1 - oy, b2 - oz
            r = max(np.sqrt(a0 * a0 + a1 * a1 + a2 * a2), np.sqrt(b0 * b0 + b1 * b1 + b2 * b2))
            qx, qy, qz = px - ox, py - oy, pz - oz
            if qx * qx + qy * qy + qz * qz > (r + size) ** 2:
                continue
            if _seg_d2(qx * ex + qy * ey, qx * nx + qy * ny + qz * nz,
                       a0 * ex + a1 * ey, a0 * nx + a1 * ny + a2 * nz,
                       b0 * ex + b1 * ey, b0 * nx + b1 * ny + b2 * nz) <= size * size:
                return True
    return False


@jit.helper
def _in_round(kind: int, size: float, xyz: np.ndarray, rho: float, first: int, last: int,
              segment: np.ndarray, lon: float, lat: float) -> bool:
    """Point within `size` metres of a circle's centre or a corridor's segments."""
    if size <= 0.0:
        return False
    if kind == CORRIDOR:
        return _near_line(size, first, last, segment, lon, lat)
    px, py, pz = ecef(lon, lat)
    d2 = (px - xyz[0]) ** 2 + (py - xyz[1]) ** 2 + (pz - xyz[2]) ** 2
    return d2 <= chord_of_arc(size, rho) ** 2


@jit.helper
def _find_cells(lon: np.ndarray, lat: np.ndarray, first: int, stop: int, ix: Index,
                point: np.ndarray, plon: np.ndarray, start: np.ndarray, end: np.ndarray
                ) -> tuple[int, int, int]:
    """Points from `first` on (before `stop`, and only until their cells hold BATCH_ENTRIES
    entries) whose grid cell has entries: their index, longitude wrapped into [-180, 180) and
    entry range, written from 0 up. Returns (points, entries, the next point to look at).
    The loop over every point takes no branches but one that is always predicted
    (mispredicted ones cost more than its work); the rare blocks further along their probe
    sequence are looked up after it."""
    table, cell_start, bits, nbx, nx, ny = ix.table, ix.cell_start, ix.bits, ix.nbx, ix.nx, ix.ny
    inv = nx / 360.0
    m = total = 0
    p = first
    while p < stop and total < BATCH_ENTRIES:
        x, y = lon[p], lat[p]
        finite = np.isfinite(x) & np.isfinite(y)
        x, y = (x, y) if finite else (0.0, 0.0)
        x = wrap_lon(x) if (x < -180.0) | (x >= 180.0) else x
        key, cell = _cell_of(x, y, inv, nx, ny, nbx)
        block = _block_fast(table, bits, key)
        c = (max(block, 0) << (2 * BLOCK_BITS)) + cell
        a, b = cell_start[c], cell_start[c + 1]
        b = b if finite & (block >= 0) else a
        point[m], plon[m], start[m], end[m] = p, x, a, b
        m += (b > a) | (finite & (block == FURTHER))
        total += b - a
        p += 1
    for j in range(m):
        if start[j] == end[j]:  # FURTHER
            key, cell = _cell_of(plon[j], lat[point[j]], inv, nx, ny, nbx)
            block = _block(table, bits, key)
            c = (max(block, 0) << (2 * BLOCK_BITS)) + cell
            start[j], end[j] = cell_start[c], cell_start[c + 1] if block >= 0 else cell_start[c]
            total += end[j] - start[j]
    return m, total, p


@njit(cache=True)
def contains_kernel(lon: np.ndarray, lat: np.ndarray, margin: float, g: Geometry, ix: Index
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(point, fence) pairs with the point inside the fence grown by `margin` metres.

    The time goes into waiting for memory (grid cells, entries, rasters, edges at random
    places), so points go in batches of CHUNK through steps that each read one kind of thing
    for the whole batch: the reads of different points then overlap."""
    # Fields are read once here, and helpers get arrays: tuples inside the loop are slow.
    entry = ix.entry
    grid, raster, band_start, band_edge = g.item_grid, g.raster, g.band_start, g.band_edge
    item_lon0, item_first, item_last = g.item_lon0, g.item_first, g.item_last
    item_size, item_xyz, item_rho = g.item_size, g.item_xyz, g.item_rho
    ring_start, vx, vy, segment = g.ring_start, g.vx, g.vy, g.segment
    pts = np.empty(lon.size // 8 + 1024, np.int64)  # grown when needed
    fen = np.empty(pts.size, np.int64)
    n = 0
    point, plon = np.empty(CHUNK, np.int64), np.empty(CHUNK)
    start, end = np.empty(CHUNK, np.int64), np.empty(CHUNK, np.int64)
    size = 0  # candidates: (point in batch, entry), hit, and for tests x in the item's frame
    owner, cand, hit = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.bool_)
    test, cand_x, band = np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
    sure = margin >= 0.0
    first = 0
    while first < lon.size:
        m, total, first = _find_cells(lon, lat, first, min(first + CHUNK, lon.size), ix, point,
                                      plon, start, end)
        if total > size:
            size = max(2 * total, 4 * CHUNK)
            owner, cand, hit = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(
                size, np.bool_)
            test, cand_x, band = np.empty(size, np.int64), np.empty(size), np.empty(size, np.int64)
        c = t = 0  # candidates: entries whose box holds the point; tests: those not SURE
        for j in range(m):
            x, y = plon[j], lat[point[j]]
            for k in range(start[j], end[j]):
                e = entry[k]
                inside = (x >= e.lon_lo) & (x <= e.lon_hi) & (y >= e.lat_lo) & (y <= e.lat_hi)
                known = sure & (e.state == SURE)
                owner[c], cand[c], hit[c], test[t] = j, k, known, c
                t += inside & (not known)
                c += inside
        u = 0  # polygons: decide by the raster; those at BOUNDARY cells wait
        for q in range(t):
            i = test[q]
            e = entry[cand[i]]
            x, y, it = plon[owner[i]], lat[point[owner[i]]], e.item
            if e.kind == POLYGON:
                if e.turns == FULL:  # into the frame [c - 180, c + 180)
                    x += 360.0 * np.ceil((item_lon0[it] - x) / 360.0 - 0.5)
                else:
                    x += 360.0 * e.turns
                cell, b = _raster_cell(grid, raster, it, x, y)
                hit[i], cand_x[i], band[i] = cell == INSIDE, x, b if cell == BOUNDARY else -1
                test[u] = i
                u += (cell == BOUNDARY) | (margin != 0.0)
            else:
                hit[i] = _in_round(e.kind, item_size[it] + margin, item_xyz[it], item_rho[it],
                                   item_first[it], item_last[it], segment, x, y)
        for q in range(u):  # even-odd test over one band; grown / shrunk polygons
            i = test[q]
            x, y, it = cand_x[i], lat[point[owner[i]]], entry[cand[i]].item
            h = _crossings(band_start, band_edge, band[i], x, y) if band[i] >= 0 else hit[i]
            if margin != 0.0 and h != (margin > 0.0):
                h = h != _near_edge(item_first[it], item_last[it], ring_start, vx, vy, x, y,
                                    abs(margin))
            hit[i] = h
        if n + c > pts.size:
            pts, fen = _grown(pts, n + c), _grown(fen, n + c)
        last_p = last_f = -1
        for i in range(c):  # pairs, one per (point, fence): parts of a fence are adjacent
            p, f = point[owner[i]], entry[cand[i]].fence  # (written always, kept if new)
            new = hit[i] & ((p != last_p) | (f != last_f))
            pts[n], fen[n] = p, f
            last_p, last_f = (p, f) if new else (last_p, last_f)
            n += new
    return pts[:n], fen[:n]


@njit(cache=True)
def _grown(a: np.ndarray, need: int) -> np.ndarray:
    """A copy of `a` with room for at least `need` items (doubling)."""
    out = np.empty(max(need, 2 * a.size), a.dtype)
    out[:a.size] = a
    return out
