"""Reefer thermal model: setpoint inside the profile, slow drift, door openings, excursions."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .scenario import PROFILES, Profile

# the built-ins' set points and humidity; other profiles' come from their limits
SETPOINT_C = {"pharma_2_8": 5.0, "frozen": -22.0, "chilled_food": 2.5, "ambient": 20.0}
HUMIDITY_PCT = {"pharma_2_8": 55.0, "frozen": 70.0, "chilled_food": 85.0, "ambient": 45.0}
DEFAULT_HUMIDITY_PCT = 60.0
MIN_OUTSIDE_C = 0.3  # excursion readings are at least ~this far beyond the limit


class Reefer(NamedTuple):
    """Reported reefer values (scaled integers ready for encoding) and the raw temperature."""

    humidity_e1: np.ndarray
    door_open: np.ndarray
    battery_e1: np.ndarray
    temp_c: np.ndarray  # unrounded temperature (overlays start from it; encoded later)


class Doors(NamedTuple):
    """Door openings of many reefers: owner index, start (epoch ms), duration (ms)."""

    owner: np.ndarray
    start_ms: np.ndarray
    dur_ms: np.ndarray


def margin_c(p: Profile) -> float:
    """Normal readings stay at least this far inside the profile limits."""
    return max(0.4, 0.08 * (p.max_c - p.min_c))


def inner_range(p: Profile) -> tuple[float, float]:
    """Band that normal (non-excursion) readings are clipped to."""
    m = margin_c(p)
    return p.min_c + m, p.max_c - m


def setpoint_c(name: str) -> float:
    """Reefer set point for a profile: the middle of its range unless a built-in's is given
    (either way `fleet_reefers` keeps it a quarter of the normal band inside)."""
    p = PROFILES[name]
    return SETPOINT_C.get(name, (p.min_c + p.max_c) / 2)


def humidity_range(p: Profile) -> tuple[float, float]:
    """Band that humidity readings are clipped to: inside the profile's limits when it has any."""
    if p.humidity_min is None or p.humidity_max is None:
        return 5.0, 99.0
    m = max(0.4, 0.08 * (p.humidity_max - p.humidity_min))
    return p.humidity_min + m, p.humidity_max - m


def humidity_pct(name: str) -> float:
    """Typical relative humidity in a profile's reefer: the middle of its limits if any."""
    p = PROFILES[name]
    if p.humidity_min is not None and p.humidity_max is not None:
        return (p.humidity_min + p.humidity_max) / 2
    return HUMIDITY_PCT.get(name, DEFAULT_HUMIDITY_PCT)


def fleet_reefers(profiles: list[str], owner: np.ndarray, t_ms: np.ndarray, doors: Doors,
                  rng: np.random.Generator) -> Reefer:
    """Readings of many reefers at once (reefer j: ``owner == j``, profile ``profiles[j]``).

    Setpoint inside the profile, slow drift (a few long sinusoids), sensor noise, and door
    openings that warm the load briefly; clipped to the profile range minus a margin.
    """
    m, n = len(profiles), t_ms.size
    rng_lo = np.array([inner_range(PROFILES[p])[0] for p in profiles])
    rng_hi = np.array([inner_range(PROFILES[p])[1] for p in profiles])
    band = rng_hi - rng_lo
    sp = np.array([setpoint_c(p) for p in profiles]) + rng.normal(0, 0.12, m) * band
    sp = np.clip(sp, rng_lo + 0.25 * band, rng_hi - 0.25 * band)
    amp = rng.uniform(0, 0.1, (m, 3)) * band[:, None]
    period = rng.uniform(20, 180, (m, 3))
    phase = rng.uniform(0, 2 * np.pi, (m, 3))
    hum_lo, hum_hi = np.array([humidity_range(PROFILES[p]) for p in profiles]).T
    hum0 = np.array([humidity_pct(p) for p in profiles]) + rng.normal(0, 4, m)
    batt0 = rng.uniform(35, 100, m)
    drain = rng.uniform(0.3, 1.0, m)  # % per hour

    first = np.full(m, np.iinfo(np.int64).max)
    np.minimum.at(first, owner, t_ms)
    tmin = (t_ms - first[owner]) / 60_000.0
    temp = sp[owner] + rng.normal(0, 0.05, n)
    for j in range(3):
        temp += amp[owner, j] * np.sin(2 * np.pi * tmin / period[owner, j] + phase[owner, j])
    hum = hum0[owner] + rng.normal(0, 1.2, n)
    door = np.zeros(n, dtype=bool)
    # door openings, slot by slot (the k-th opening of every reefer at once)
    order = np.lexsort((doors.start_ms, doors.owner))
    d_own, d_start, d_dur = doors.owner[order], doors.start_ms[order], doors.dur_ms[order]
    first_of = np.searchsorted(d_own, np.arange(m))
    slot = np.arange(d_own.size) - first_of[d_own]
    d_temp = rng.uniform(0.15, 0.4, d_own.size) * band[d_own]
    d_hum = rng.uniform(6, 14, d_own.size)
    d_tau = rng.uniform(4, 10, d_own.size) * 60_000
    for k in range(int(slot.max()) + 1 if slot.size else 0):
        sel = slot == k
        start = np.full(m, np.iinfo(np.int64).max // 4)
        start[d_own[sel]] = d_start[sel]
        dur, a_t, a_h, tau = (np.zeros(m) for _ in range(4))
        dur[d_own[sel]], a_t[d_own[sel]] = d_dur[sel], d_temp[sel]
        a_h[d_own[sel]], tau[d_own[sel]] = d_hum[sel], d_tau[sel]
        s = start[owner]
        after = t_ms >= s
        w = np.where(after, np.exp(-np.maximum(t_ms - s, 0) / np.maximum(tau[owner], 1.0)), 0.0)
        temp += a_t[owner] * w
        hum += a_h[owner] * w
        door |= after & (t_ms < s + dur[owner])
    temp = np.clip(temp, rng_lo[owner], rng_hi[owner])
    batt = batt0[owner] - drain[owner] * tmin / 60.0
    return Reefer(
        np.rint(np.clip(hum, hum_lo[owner], hum_hi[owner]) * 10).astype(np.int64),
        door,
        np.rint(np.clip(batt, 0, 100) * 10).astype(np.int64),
        temp,
    )


def excursion_overlay(temp_c: np.ndarray, t_ms: np.ndarray, i: int, k: int, profile: str,
                      direction: str, long: bool, rng: np.random.Generator) -> float:
    """Push readings ``i..i+k`` of one reefer outside the profile (in place); return the peak.

    A few readings before ``i`` ramp towards the limit (still inside) and readings after
    ``i+k`` recover from the limit back to normal, so exactly ``i..i+k`` are outside.
    """
    p = PROFILES[profile]
    lo, hi = inner_range(p)
    edge = hi if direction == "high" else lo
    pre = np.arange(max(0, i - 5), i)
    if pre.size:
        w = np.linspace(0.2, 1.0, pre.size)
        temp_c[pre] = temp_c[pre] * (1 - w) + edge * w
    span = max(1, int(t_ms[i + k] - t_ms[i]))
    x = (t_ms[i : i + k + 1] - t_ms[i]) / span
    d0 = rng.uniform(MIN_OUTSIDE_C, 0.8)
    if direction == "high":
        amp = rng.uniform(2.0, 8.0) if long else rng.uniform(0.3, 1.5)
        out = p.max_c + d0 + amp * (1 - np.exp(-3 * x)) + rng.normal(0, 0.05, k + 1)
        out = np.maximum(out, p.max_c + MIN_OUTSIDE_C / 2)
        peak = float(out.max())
    else:
        amp = rng.uniform(1.0, 3.0) if long else rng.uniform(0.2, 1.0)
        out = p.min_c - d0 - amp * (1 - np.exp(-3 * x)) + rng.normal(0, 0.05, k + 1)
        out = np.minimum(out, p.min_c - MIN_OUTSIDE_C / 2)
        peak = float(out.min())
    temp_c[i : i + k + 1] = out
    post = np.arange(i + k + 1, t_ms.size)
    if post.size:
        w = np.exp(-(t_ms[post] - t_ms[i + k + 1]) / (8 * 60_000.0))
        temp_c[post] = temp_c[post] * (1 - w) + edge * w
    return round(peak, 2)
