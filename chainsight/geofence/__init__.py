"""Geofence engine: fences from GeoJSON, point-in-fence kernels, transitions, GPS filters."""

from .fences import KINDS, FenceError, FenceSet

__all__ = ["KINDS", "FenceError", "FenceSet"]
