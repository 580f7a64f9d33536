"""GPS fix quality filters (after Traccar's): each optional, each rejection counted by reason.

Fixes are judged against the device's previous *accepted* fix, in the order given.
Devices are dense non-negative ints; new ids may appear in any call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from chainsight import jit
from chainsight.engine.state import Columns

from .geodesy import R_MAX, RAD, geodesic_scalar_m

REASONS = ("invalid", "zero", "accuracy", "duplicate", "interval", "speed")
KEEP, INVALID, ZERO, ACCURACY, DUPLICATE, INTERVAL, SPEED = range(7)
_NONE = np.iinfo(np.int64).min  # no accepted fix yet


class GpsFilter:
    """Keep-mask for GPS fixes. A threshold of None switches that filter off.

    - invalid: NaN / infinite / out-of-range coordinates (always on);
    - zero: the (0, 0) fix of a receiver without a position (`drop_zero`);
    - accuracy: reported accuracy_m above `max_accuracy_m` (fixes without one are kept);
    - duplicate: same time and position as the previous accepted fix (`drop_duplicates`);
    - interval: less than `min_interval_s` after the previous accepted fix;
    - speed: implied speed from the previous accepted fix above `max_speed_kmh`.
    A rejected fix is counted under the first reason in that order.
    """

    def __init__(self, max_accuracy_m: float | None = None, max_speed_kmh: float | None = None,
                 min_interval_s: float | None = None, drop_zero: bool = True,
                 drop_duplicates: bool = True) -> None:
        self.max_accuracy_m = max_accuracy_m
        self.max_speed_kmh = max_speed_kmh
        self.min_interval_s = min_interval_s
        self.drop_zero = drop_zero
        self.drop_duplicates = drop_duplicates
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.prev = Columns(ts=(np.int64, _NONE), lon=(np.float64, 0.0),
                            lat=(np.float64, 0.0))  # each device's last accepted fix

    def apply(self, device: np.ndarray, ts_ms: np.ndarray, lon: np.ndarray, lat: np.ndarray,
              accuracy_m: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the fixes to keep; updates `counts` and the per-device state."""
        device = np.ascontiguousarray(device, np.int64)
        ts_ms = np.ascontiguousarray(ts_ms, np.int64)
        lon = np.ascontiguousarray(lon, np.float64)
        lat = np.ascontiguousarray(lat, np.float64)
        acc = (np.full(device.size, np.nan) if accuracy_m is None
               else np.ascontiguousarray(accuracy_m, np.float64))
        if not device.size == ts_ms.size == lon.size == lat.size == acc.size:
            raise ValueError("all arrays must have the same length")
        if device.size == 0:
            return np.zeros(0, bool)
        if device.min() < 0:
            raise ValueError("device ids must be non-negative")
        self.prev.ensure(int(device.max()) + 1)
        prev, off = self.prev, np.inf
        reason = _filter(device, ts_ms, lon, lat, acc,
                         off if self.max_accuracy_m is None else self.max_accuracy_m,
                         off if self.max_speed_kmh is None else self.max_speed_kmh / 3.6,
                         -1 if self.min_interval_s is None else round(self.min_interval_s * 1000),
                         self.drop_zero, self.drop_duplicates, prev.ts, prev.lon, prev.lat)
        for code, count in enumerate(np.bincount(reason, minlength=len(REASONS) + 1)[1:]):
            self.counts[REASONS[code]] += int(count)
        return reason == KEEP

    def dump_state(self) -> dict:
        return {"counts": self.counts, **self.prev.dump_state()}

    def load_state(self, data: dict) -> None:
        self.counts = {reason: int(data["counts"].get(reason, 0)) for reason in REASONS}
        self.prev.load_state(data)  # its "ts", "lon" and "lat"

    def copy_devices(self, src: GpsFilter, devices: np.ndarray) -> None:
        """Make the state of these devices (dense ids) equal to `src`'s; the counts, which are
        metrics, stay."""
        self.prev.copy_rows(src.prev, devices)


@njit(cache=True)
def _filter(device: np.ndarray, ts: np.ndarray, lon: np.ndarray, lat: np.ndarray,
            acc: np.ndarray, max_acc: float, max_speed: float, min_interval: int,
            drop_zero: bool, drop_dup: bool, prev_ts: np.ndarray, prev_lon: np.ndarray,
            prev_lat: np.ndarray) -> np.ndarray:
    """Reason code per fix (KEEP = 0); max_speed in m/s; inf / -1 switch a filter off."""
    reason = np.zeros(device.size, np.int64)
    for i in range(device.size):
        d, x, y = device[i], lon[i], lat[i]
        dt = ts[i] - prev_ts[d]  # meaningless while prev_ts is _NONE: `seen` guards it
        seen = prev_ts[d] != _NONE
        if not (np.isfinite(x) and np.isfinite(y) and abs(x) <= 180 and abs(y) <= 90):
            reason[i] = INVALID
        elif drop_zero and x == 0 and y == 0:
            reason[i] = ZERO
        elif acc[i] > max_acc:
            reason[i] = ACCURACY
        elif seen and drop_dup and dt == 0 and x == prev_lon[d] and y == prev_lat[d]:
            reason[i] = DUPLICATE
        elif seen and min_interval >= 0 and dt < min_interval:  # an earlier fix: dt < 0
            reason[i] = INTERVAL
        elif seen and max_speed < np.inf and not (
                dt > 0 and _surely_within(prev_lon[d], prev_lat[d], x, y, max_speed * dt / 1000)):
            dist = geodesic_scalar_m(prev_lon[d], prev_lat[d], x, y)
            if dist > 0 and (dt <= 0 or dist / dt * 1000 > max_speed):
                reason[i] = SPEED
        if reason[i] == KEEP:
            prev_ts[d], prev_lon[d], prev_lat[d] = ts[i], x, y
    return reason


@jit.helper
def _surely_within(lon1: float, lat1: float, lon2: float, lat2: float, limit_m: float) -> bool:
    """Whether two nearby points (at most 0.1 degree apart, below 80 degrees of latitude) are
    surely less than `limit_m` apart, by an upper bound of their distance that is far cheaper
    than the geodesic: the largest radius of curvature times the equirectangular angle, plus
    1% (the approximation is good to ~0.01% at these sizes); False when unsure."""
    dlon, dlat = abs(lon2 - lon1), abs(lat2 - lat1)
    if dlon > 0.1 or dlat > 0.1 or abs(lat1) > 80 or abs(lat2) > 80:
        return False
    dx = dlon * np.cos((lat1 + lat2) / 2 * RAD)
    return 1.01 * R_MAX * RAD * np.sqrt(dx * dx + dlat * dlat) < limit_m
