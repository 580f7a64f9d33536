"""WGS-84 helpers shared by the geofence kernels (all angles in degrees, distances in metres)."""

from __future__ import annotations

import numpy as np
from numba import njit

A = 6378137.0  # semi-major axis
F = 1.0 / 298.257223563  # flattening
E2 = F * (2.0 - F)  # first eccentricity squared
R_MIN = A * (1.0 - E2)  # smallest radius of curvature (meridional, at the equator)
R_MAX = A / np.sqrt(1.0 - E2)  # largest radius of curvature (at the poles)
RAD = np.pi / 180.0

Num = float | np.ndarray  # the numba helpers below accept scalars or arrays


@njit(cache=True)
def wrap_lon(x: Num) -> Num:
    """Longitude wrapped into [-180, 180)."""
    return x - 360.0 * np.floor((x + 180.0) / 360.0)


@njit(cache=True)
def ecef(lon: Num, lat: Num) -> tuple[Num, Num, Num]:
    """Earth-centred Cartesian coordinates (x, y, z) of points on the ellipsoid surface."""
    phi = lat * RAD
    lam = lon * RAD
    s = np.sin(phi)
    n = A / np.sqrt(1.0 - E2 * s * s)
    c = n * np.cos(phi)
    return c * np.cos(lam), c * np.sin(lam), n * (1.0 - E2) * s


@njit(cache=True)
def radii(lat: Num) -> tuple[Num, Num]:
    """Meridional and prime-vertical radii of curvature (M, N) at a latitude."""
    s = np.sin(lat * RAD)
    w = 1.0 - E2 * s * s
    return A * (1.0 - E2) / (w * np.sqrt(w)), A / np.sqrt(w)


@njit(cache=True)
def chord_of_arc(s: Num, rho: Num) -> Num:
    """Straight-line (3-D) length of a surface arc of length s on a sphere of radius rho."""
    return 2.0 * rho * np.sin(np.minimum(s / (2.0 * rho), np.pi / 2))


@njit(cache=True)
def geodesic_scalar_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Distance on the WGS-84 ellipsoid (Lambert's formula, error ~10 m per 1000s of km)."""
    b1 = np.arctan((1.0 - F) * np.tan(lat1 * RAD))
    b2 = np.arctan((1.0 - F) * np.tan(lat2 * RAD))
    h = np.sin((b2 - b1) / 2) ** 2 + np.cos(b1) * np.cos(b2) * np.sin((lon2 - lon1) * RAD / 2) ** 2
    sigma = 2.0 * np.arcsin(np.sqrt(min(max(h, 0.0), 1.0)))
    if sigma < 1e-15:
        return 0.0
    p = (b1 + b2) / 2
    q = (b2 - b1) / 2
    x = (sigma - np.sin(sigma)) * (np.sin(p) * np.cos(q)) ** 2 / max(np.cos(sigma / 2) ** 2, 1e-30)
    y = (sigma + np.sin(sigma)) * (np.cos(p) * np.sin(q)) ** 2 / np.sin(sigma / 2) ** 2
    return A * (sigma - F / 2 * (x + y))


@njit(cache=True)
def _geodesic_each(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray, lat2: np.ndarray,
                   out: np.ndarray) -> None:
    for i in range(out.size):
        out[i] = geodesic_scalar_m(lon1[i], lat1[i], lon2[i], lat2[i])


def geodesic_m(lon1: Num, lat1: Num, lon2: Num, lat2: Num) -> Num:
    """`geodesic_scalar_m` over scalars or arrays broadcast together as numpy does: a float for four
    scalars, else an array of the broadcast shape. (A compiled function, loaded at its first
    call, rather than a ufunc, which Numba would build when this module is imported.)"""
    args = [np.asarray(v, dtype=np.float64) for v in (lon1, lat1, lon2, lat2)]
    shape = np.broadcast_shapes(*(a.shape for a in args))
    flat = [np.broadcast_to(a, shape).flatten() for a in args]  # writable copies
    out = np.empty(flat[0].size)
    _geodesic_each(*flat, out)
    return float(out[0]) if shape == () else out.reshape(shape)


def piece_counts(lon: np.ndarray, lat: np.ndarray, max_m: float) -> np.ndarray:
    """How many pieces `densify` cuts each segment of a lon/lat line into."""
    dlon, dlat = np.diff(lon), np.diff(lat)
    a, b = lat[:-1], lat[1:]
    equatorward = np.where(a * b <= 0, 0.0, np.minimum(np.abs(a), np.abs(b)))
    extent = np.maximum(np.abs(dlat), np.abs(dlon) * np.cos(equatorward * RAD)) * RAD * R_MAX
    return np.maximum(1, np.ceil(extent / max_m)).astype(np.int64)


def densify(lon: np.ndarray, lat: np.ndarray, max_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Insert vertices (linearly in lon/lat, as RFC 7946 lines are) so no piece is over max_m."""
    dlon, dlat = np.diff(lon), np.diff(lat)
    n = piece_counts(lon, lat, max_m)
    seg = np.repeat(np.arange(n.size), n)
    t = (np.arange(seg.size) - np.repeat(np.cumsum(n) - n, n)) / n[seg]
    return (np.append(lon[:-1][seg] + t * dlon[seg], lon[-1]),
            np.append(lat[:-1][seg] + t * dlat[seg], lat[-1]))
