"""Which shipments/devices get which fault, and where in their readings it goes.

Rules that keep the ground truth unambiguous:
- a reefer sensor carries at most one of: long excursion, short excursion, silence, clock skew
  (so excursions and silences are never on a skewed clock and never overlap each other);
- a tracker carries at most one of: clock skew, offline buffering;
- duplicates and GPS outliers may hit any device (the engine must absorb them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scenario import PROFILES, Scenario


@dataclass
class Spans:
    """Per-shipment event-time spans (epoch ms arrays) used to decide eligibility."""

    sensor_lo: np.ndarray
    sensor_hi: np.ndarray
    transit_lo: np.ndarray  # in_transit status (order event) .. arrival
    transit_hi: np.ndarray
    active: np.ndarray  # not cancelled and devices report inside the window


@dataclass
class FaultPlan:
    """Assignment of faults to shipments, with their drawn parameters."""

    sensor: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    tracker: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)


def requested_count(rate: float, count: int | None, shipments: int) -> int:
    """Exact count if given, else ``round(rate * shipments)``."""
    return int(count) if count is not None else int(round(rate * shipments))


def _pick(rng: np.random.Generator, eligible: np.ndarray, k: int) -> list[int]:
    idx = np.flatnonzero(eligible)
    k = min(k, idx.size)
    return sorted(rng.choice(idx, size=k, replace=False).tolist()) if k else []


def plan_faults(scn: Scenario, profiles: list[str], spans: Spans,
                rng: np.random.Generator) -> FaultPlan:
    """Choose shipments for each fault kind among those whose spans can host it."""
    n = len(profiles)
    r_ms = scn.sensor_interval_s * 1000
    g_ms = scn.gps_interval_s * 1000
    exc_min = np.array([PROFILES[p].excursion_min for p in profiles])
    sensor_len = spans.sensor_hi - spans.sensor_lo
    transit_len = spans.transit_hi - spans.transit_lo
    plan = FaultPlan()
    free_sensor = spans.active.copy()
    free_tracker = spans.active.copy()

    def take(kind: str, eligible: np.ndarray, params: list[dict[str, Any]] | None,
             rate: float, count: int | None, sensor: bool) -> list[int]:
        want = requested_count(rate, count, n)
        plan.requested[kind] = want
        chosen = _pick(rng, eligible & (free_sensor if sensor else free_tracker), want)
        for i in chosen:
            (plan.sensor if sensor else plan.tracker)[i] = (kind, params[i] if params else {})
            (free_sensor if sensor else free_tracker)[i] = False
        return chosen

    # long excursions: >= 1.5x excursion_min measured on reading timestamps, plus room for a
    # ramp before and a recovery after
    f = rng.uniform(*scn.excursion_factor, n)
    dur = f * exc_min * 60_000
    need = dur + 16 * r_ms
    params = [{"duration_ms": float(d)} for d in dur]
    take("excursion", sensor_len >= need, params, scn.excursion_rate, scn.excursion_count, True)

    f = rng.uniform(*scn.short_excursion_factor, n)
    dur = f * exc_min * 60_000
    need = dur + 16 * r_ms
    params = [{"duration_ms": float(d)} for d in dur]
    take("short_excursion", sensor_len >= need, params, scn.short_excursion_rate,
         scn.short_excursion_count, True)

    dur = rng.uniform(*scn.silence_min, n) * 60_000
    params = [{"duration_ms": float(d)} for d in dur]
    take("silence", transit_len >= dur + 5 * r_ms, params, scn.silence_rate, scn.silence_count,
         True)

    # clock skew: a device of the shipment (sensor if its sensor is still fault-free, by coin)
    lo, hi = scn.clock_skew_s
    cap = scn.clock_skew_max_ahead_s
    ahead = rng.random(n) < 0.5
    skew = np.where(ahead, rng.uniform(min(lo, cap), min(hi, cap), n),
                    -rng.uniform(lo, hi, n)) * 1000
    want = requested_count(scn.clock_skew_rate, scn.clock_skew_count, n)
    plan.requested["clock_skew"] = want
    coin = rng.random(n) < 0.5
    for i in _pick(rng, spans.active & (free_sensor | free_tracker), want):
        use_sensor = bool(free_sensor[i] and (coin[i] or not free_tracker[i]))
        if use_sensor:
            plan.sensor[i] = ("sensor_skew", {"skew_ms": int(round(skew[i]))})
            free_sensor[i] = False
        else:
            plan.tracker[i] = ("tracker_skew", {"skew_ms": int(round(skew[i]))})
            free_tracker[i] = False

    dur = rng.uniform(*scn.offline_min, n) * 60_000
    params = [{"duration_ms": float(d)} for d in dur]
    take("offline", transit_len >= dur + 8 * g_ms, params, scn.offline_rate, scn.offline_count,
         False)
    return plan


def place_run(t_ms: np.ndarray, lo_ms: float, hi_ms: float, k: int,
              rng: np.random.Generator, pad: int = 0) -> int | None:
    """Start index i of a run of readings i..i+k lying inside [lo_ms, hi_ms].

    ``pad`` readings stay available on both sides of the run; None when it does not fit.
    """
    first = max(int(np.searchsorted(t_ms, lo_ms, side="left")), pad)
    last = min(int(np.searchsorted(t_ms, hi_ms, side="right")) - 1, t_ms.size - 1 - pad) - k
    if last < first:
        return None
    return int(rng.integers(first, last + 1))


def duplicate_picks(n_rows: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Row numbers (into the concatenated event table) that are sent twice."""
    k = int(rng.binomial(n_rows, rate)) if n_rows and rate > 0 else 0
    return np.sort(rng.choice(n_rows, size=k, replace=False)) if k else np.zeros(0, np.int64)
