"""GpsFilter: each filter optional, each rejection counted by reason."""

import numpy as np
import pytest

from chainsight.geofence import REASONS, GpsFilter
from chainsight.geofence.geodesy import geodesic_m


def apply(f, rows):
    """rows: (device, ts_ms, lon, lat, accuracy_m)."""
    a = np.array(rows, dtype=float).T
    return f.apply(a[0].astype(int), a[1].astype(np.int64), a[2], a[3], a[4]).tolist()


def test_every_reason_is_counted():
    f = GpsFilter(max_accuracy_m=50, max_speed_kmh=150, min_interval_s=5)
    keep = apply(f, [
        (0, 0, 4.90, 52.37, 10),  # kept
        (0, 1_000, np.nan, 52.37, 10),  # invalid
        (0, 2_000, 190.0, 52.37, 10),  # invalid: out of range
        (0, 3_000, 0.0, 0.0, 10),  # zero
        (0, 10_000, 4.91, 52.37, 80),  # poor accuracy
        (0, 0, 4.90, 52.37, 10),  # duplicate of the first
        (0, 2_000, 4.90, 52.371, 10),  # too soon after the last kept fix
        (0, 60_000, 5.50, 52.37, 10),  # 41 km in a minute: speed
        (0, 60_000, 4.901, 52.37, np.nan),  # kept: no accuracy reported, 68 m in 60 s
    ])
    assert keep == [True, False, False, False, False, False, False, False, True]
    assert f.counts == {"invalid": 2, "zero": 1, "accuracy": 1, "duplicate": 1, "interval": 1,
                        "speed": 1}
    assert set(f.counts) == set(REASONS)


def test_filters_are_optional():
    f = GpsFilter(drop_zero=False, drop_duplicates=False)
    keep = apply(f, [(0, 0, 0.0, 0.0, 1e6), (0, 0, 0.0, 0.0, 1e6), (0, 1, 90.0, 0.0, 1e6)])
    assert keep == [True, True, True]
    assert sum(f.counts.values()) == 0
    keep = apply(f, [(1, 0, 1.0, 1.0, 0), (1, 0, np.inf, 1.0, 0)])
    assert keep == [True, False] and f.counts["invalid"] == 1  # invalid is always on


def test_speed_is_measured_from_the_last_accepted_fix():
    f = GpsFilter(max_speed_kmh=100)
    keep = apply(f, [
        (0, 0, 10.0, 50.0, 0),
        (0, 60_000, 11.0, 50.0, 0),  # 71 km in 1 min: rejected
        (0, 120_000, 10.01, 50.0, 0),  # 716 m in 2 min from the first fix: kept
        (0, 120_000, 10.02, 50.0, 0),  # moved with no time passing: rejected
    ])
    assert keep == [True, False, True, False] and f.counts["speed"] == 2


def test_state_per_device_and_across_calls():
    f = GpsFilter(min_interval_s=10)
    assert apply(f, [(0, 0, 1.0, 1.0, 0), (1, 5_000, 1.0, 1.0, 0)]) == [True, True]
    assert apply(f, [(0, 5_000, 1.0, 1.1, 0), (3, 5_000, 1.0, 1.1, 0),
                     (0, 10_000, 1.0, 1.2, 0)]) == [False, True, True]
    assert f.counts["interval"] == 1


def test_bad_input():
    f = GpsFilter()
    assert f.apply(np.array([], int), np.array([], int), np.array([]), np.array([])).size == 0
    with pytest.raises(ValueError):
        f.apply(np.array([0, 1]), np.array([0]), np.array([0.0]), np.array([0.0]))
    with pytest.raises(ValueError):
        f.apply(np.array([-1]), np.array([0]), np.array([0.0]), np.array([0.0]))


def test_interval_filter_off_keeps_fixes_out_of_order():
    """With min_interval_s None, a fix older than the device's last one is still kept."""
    f = GpsFilter()
    keep = apply(f, [(0, 40_000, 4.0, 52.0, 0), (0, 20_000, 4.0, 52.001, 0),
                     (0, 60_000, 4.0, 52.002, 0)])
    assert keep == [True, True, True] and f.counts["interval"] == 0
    on = GpsFilter(min_interval_s=0)  # on, even at 0: an earlier fix is too soon
    assert apply(on, [(0, 40_000, 4.0, 52.0, 0), (0, 20_000, 4.0, 52.001, 0)]) == [True, False]


def test_the_speed_filter_judges_by_the_geodesic_near_its_limit():
    """Fixes just under and just over the speed limit, anywhere (poles and antimeridian
    included), are judged as the geodesic distance says, whatever shortcut the filter takes."""
    rng = np.random.default_rng(7)
    n, limit_kmh = 4_000, 150
    lat = rng.uniform(-89.9, 89.9, n)
    lon = rng.uniform(-180, 180, n)
    bearing = rng.uniform(0, 2 * np.pi, n)
    step = rng.uniform(0.0005, 0.05, n)  # degrees, up to ~5 km
    lat2 = np.clip(lat + step * np.sin(bearing), -89.99, 89.99)
    lon2 = (lon + step * np.cos(bearing) + 180) % 360 - 180
    dist = geodesic_m(lon, lat, lon2, lat2)
    dt_ms = np.round(dist / (limit_kmh / 3.6) * 1000 * rng.choice([0.995, 1.005], n))
    dt_ms = np.maximum(dt_ms, 1).astype(np.int64)
    f = GpsFilter(max_speed_kmh=limit_kmh)
    devices = np.repeat(np.arange(n), 2)
    keep = f.apply(devices, np.column_stack([np.zeros(n, np.int64), dt_ms]).ravel(),
                   np.column_stack([lon, lon2]).ravel(), np.column_stack([lat, lat2]).ravel())
    expected = ~((dist > 0) & (dist / dt_ms * 1000 > limit_kmh / 3.6))
    assert keep[1::2].tolist() == expected.tolist()
    assert 0 < f.counts["speed"] < n
