"""Geofence engine: fences from GeoJSON, point-in-fence kernels, transitions, GPS filters."""

from .fences import KINDS, FenceError, FenceSet
from .gps_filter import REASONS, GpsFilter
from .tracker import FenceTracker, FenceTransition

__all__ = ["KINDS", "REASONS", "FenceError", "FenceSet", "FenceTracker", "FenceTransition",
           "GpsFilter"]
