"""A shipment's carbon estimate after the GLEC Framework / ISO 14083: distance × mass × the
mode's emission intensity (g CO2e per tonne-km, well-to-wheel), plus the uplift for temperature
control. The factors come from a versioned table (`carbon_factors.json`) whose rows record the
GLEC version, scope, distance basis, region and source, and the estimate says which row it used.

Distance: what the shipment's GPS fixes travelled; without fixes, the great circle from origin
to destination adjusted as the factor's distance basis says (air + 95 km, sea + 15%).
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np

from chainsight.config import config_dir, defaults
from chainsight.geofence.geodesy import geodesic_m

AIR_EXTRA_KM = 95.0
SEA_FACTOR = 1.15


@cache
def factor_table() -> dict:
    """The factor table: the user's config directory's `carbon_factors.json`, else the
    package's."""
    override = config_dir()
    if override is not None and (override / "carbon_factors.json").is_file():
        return json.loads((override / "carbon_factors.json").read_text())
    return json.loads((defaults() / "carbon_factors.json").read_text())


def track_km(lat: np.ndarray, lon: np.ndarray) -> float:
    """Length of a track of GPS fixes in time order (km on the WGS-84 ellipsoid)."""
    if len(lat) < 2:
        return 0.0
    return float(np.sum(geodesic_m(lon[:-1], lat[:-1], lon[1:], lat[1:]))) / 1000.0


def great_circle_km(mode: str, origin: tuple[float, float],
                    destination: tuple[float, float]) -> float:
    """Origin to destination ((lat, lon) each) as the mode's distance basis counts it."""
    km = float(geodesic_m(origin[1], origin[0], destination[1], destination[0])) / 1000.0
    if mode == "air":
        return km + AIR_EXTRA_KM
    if mode == "sea":
        return km * SEA_FACTOR
    return km


def _factor(table: dict, mode: str, km: float) -> dict | None:
    rows = [f for f in table["factors"] if f["mode"] == mode and f["min_km"] <= km]
    return max(rows, key=lambda f: f["min_km"], default=None)


def estimate(mode: str | None, weight_kg: float | None, km: float | None, measured: bool,
             temperature_controlled: bool, table: dict | None = None) -> dict:
    """The estimate in kg CO2e with its inputs and method; `kg_co2e` is None (and `missing`
    says why) when the mode, weight or distance is unknown."""
    table = table or factor_table()
    mode = mode or "road"
    missing = [name for name, value in (("weight_kg", weight_kg), ("distance", km))
               if value is None]
    factor = None if km is None else _factor(table, mode, km)
    if factor is None and not missing:
        missing.append(f"an emission factor for mode {mode}")
    result = {"kg_co2e": None, "mode": mode, "distance_km": km, "weight_kg": weight_kg,
              "distance_basis": "GPS track" if measured else "great circle, origin to "
              "destination", "temperature_controlled": temperature_controlled,
              "method": "GLEC Framework / ISO 14083: distance × mass × intensity (WTW)",
              "table_version": table["version"], "factor": factor, "missing": missing}
    if missing:
        return result
    uplift = factor["temperature_controlled_uplift"] if temperature_controlled else 0.0
    grams = km * weight_kg / 1000.0 * factor["g_co2e_per_tkm"] * (1.0 + uplift)
    result["kg_co2e"] = round(grams / 1000.0, 3)
    return result
