"""Small geodesy helpers on a sphere (well within 0.5% of WGS-84 at route scales); distances
come from the geofence engine's `geodesic_m`, so the simulator measures as the engine does."""

from __future__ import annotations

import numpy as np

EARTH_R_M = 6_371_008.8
M_PER_DEG = EARTH_R_M * np.pi / 180.0


def bearing_deg(lat1: np.ndarray | float, lon1: np.ndarray | float,
                lat2: np.ndarray | float, lon2: np.ndarray | float) -> np.ndarray:
    """Initial bearing in degrees [0, 360) (vectorised)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.degrees(np.arctan2(y, x)) % 360.0


def offset(lat: np.ndarray | float, lon: np.ndarray | float, north_m: np.ndarray | float,
           east_m: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Shift positions by metres north/east (local flat approximation)."""
    lat = np.asarray(lat, dtype=float)
    dlat = np.asarray(north_m) / M_PER_DEG
    dlon = np.asarray(east_m) / (M_PER_DEG * np.cos(np.radians(lat)))
    return lat + dlat, np.asarray(lon, dtype=float) + dlon
