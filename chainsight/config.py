"""Engine settings and product profiles, read from the repository's `config/` directory.

`CHAINSIGHT_CONFIG_DIR` points elsewhere; files passed explicitly override the defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

MINUTE_MS = 60_000


def config_dir() -> Path:
    """The directory holding settings.json, profiles.json and example fences."""
    env = os.environ.get("CHAINSIGHT_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "config"


@dataclass(frozen=True)
class Profile:
    """A product's cold-chain limits (°C, %RH and minutes of event time)."""

    name: str
    min_c: float
    max_c: float
    excursion_min: float
    humidity_min: float | None = None
    humidity_max: float | None = None
    cumulative_budget_min: float | None = None
    door_open_max_min: float | None = None
    mkt_min_h: float | None = None  # MKT alerts once it covers this long; None: reported only

    def __post_init__(self) -> None:
        if not self.min_c < self.max_c:
            raise ValueError("min_c must be below max_c")
        if (self.humidity_min is None) != (self.humidity_max is None):
            raise ValueError("humidity_min and humidity_max go together")
        if self.humidity_min is not None and not self.humidity_min < self.humidity_max:
            raise ValueError("humidity_min must be below humidity_max")


@dataclass(frozen=True)
class Settings:
    allowed_lateness_min: float = 5
    sensor_silent_min: float = 10
    future_tolerance_h: float = 24
    max_payload_bytes: int = 65536
    dedup_window_min: float = 60
    alert_quiet_min: float = 10  # a resolved alert whose condition returns this soon continues
    escalate_after_min: float | None = 5  # unacknowledged this long: escalation; None: never
    critical_after_min: float | None = 60  # a condition lasting this long becomes critical
    alert_retention_h: float | None = 24  # resolved alerts and audit entries kept in memory
    geofence_min_fixes: int = 1  # hysteresis, off by default: fixes needed to confirm a crossing
    geofence_min_seconds: float = 0  # ... and seconds spanned by them
    geofence_min_metres: float = 0  # ... and metres inside/outside the boundary
    route_deviation_min_metres: float = 50  # outside the assigned corridor by this much...
    route_deviation_min_fixes: int = 3  # ... for this many fixes in a row
    gps_drop_zero: bool = True  # GPS quality filters (None: off); dropped fixes are counted
    gps_max_accuracy_m: float | None = None
    gps_max_speed_kmh: float | None = None
    gps_min_interval_s: float | None = None

    @property
    def allowed_lateness_ms(self) -> int:
        return int(self.allowed_lateness_min * MINUTE_MS)

    @property
    def sensor_silent_ms(self) -> int:
        return int(self.sensor_silent_min * MINUTE_MS)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def load_settings(path: Path | None = None, **overrides: float) -> Settings:
    """Settings from `config/settings.json` (or `path`), then keyword overrides."""
    known = {f.name for f in fields(Settings)}
    values = _read_json(path or config_dir() / "settings.json")
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


def load_profiles(*paths: Path) -> dict[str, Profile]:
    """Built-in profiles from `config/profiles.json`, extended or overridden by `paths`."""
    profiles: dict[str, Profile] = {}
    for path in (config_dir() / "profiles.json", *paths):
        for name, spec in _read_json(path).items():
            try:
                profiles[name] = Profile(name=name, **spec)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}: profile {name!r}: {exc}") from exc
    return profiles
