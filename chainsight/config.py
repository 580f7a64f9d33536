"""Configuration, in one place: engine settings, product profiles, the distributed runtime's
settings and the simulator's presets.

Each value comes from, in order of precedence: keyword overrides (command-line options), an
environment variable `CHAINSIGHT_<NAME>` (e.g. `CHAINSIGHT_ALLOWED_LATENESS_MIN=2`), the user's
config directory (`CHAINSIGHT_CONFIG_DIR`: `settings.json`, `streams.json`, `profiles.json`,
`scenarios/`), and the defaults: the dataclass fields below and the files shipped in the package
(`chainsight/defaults/`), so an installed wheel works with no files of its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

MINUTE_MS = 60_000
CONFIG_DIR_ENV = "CHAINSIGHT_CONFIG_DIR"
ENV_PREFIX = "CHAINSIGHT_"


def defaults() -> Traversable:
    """The defaults shipped inside the package: profiles.json, scenarios/, example fences."""
    return resources.files("chainsight") / "defaults"


def config_dir() -> Path | None:
    """The user's config directory (`CHAINSIGHT_CONFIG_DIR`), whose `settings.json`,
    `streams.json`, `profiles.json` and `scenarios/` override the defaults; None when unset."""
    env = os.environ.get(CONFIG_DIR_ENV)
    return Path(env) if env else None


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
    gps_max_speed_kmh: float | None = 250  # implied speed between fixes
    gps_min_interval_s: float | None = None
    eta: bool = True  # ETAs, their model and `eta_late` (false: off)
    eta_interval_min: float = 5  # an ETA at least this often per shipment in transit
    eta_late_margin_min: float = 30  # eta_late: an ETA this much later than promised_by
    eta_shards: int = 1  # ETA models, by shipment (the distributed runtime: its partitions)
    record_anchor_min: float = 60  # live runtimes anchor all records' heads this often
    record_block_rows: int = 1024  # a record's block: at most this many readings...
    record_block_min: float | None = 10  # ... waiting at most this long (stream time; None:
    # until full or the end of the stream, as `replay --record-out` does)

    @property
    def allowed_lateness_ms(self) -> int:
        return int(self.allowed_lateness_min * MINUTE_MS)

    @property
    def sensor_silent_ms(self) -> int:
        return int(self.sensor_silent_min * MINUTE_MS)


def read_json(path: Path | Traversable) -> dict:
    """A JSON object from a file, without `_`-prefixed (comment) keys; ValueError naming the
    file otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return {k: v for k, v in data.items() if not k.startswith("_")}


T = TypeVar("T")


def layered(cls: type[T], file_name: str, env_names: dict[str, str] | None = None,
            **overrides: object) -> T:
    """A settings dataclass from its defaults, then `file_name` in the config directory, then
    `CHAINSIGHT_<FIELD>` environment variables (or the names in `env_names`), then
    `overrides` (None values ignored)."""
    names = [f.name for f in fields(cls)]
    directory = config_dir()
    path = None if directory is None else directory / file_name
    values = read_json(path) if path is not None and path.is_file() else {}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"{path}: unknown settings: {', '.join(sorted(unknown))}")
    env_names = env_names or {}
    for name in names:
        var = env_names.get(name, ENV_PREFIX + name.upper())
        text = os.environ.get(var)
        if text:
            values[name] = _env_value(text, cls, name, var)
    values.update({k: v for k, v in overrides.items() if v is not None})
    types = {f.name: str(f.type) for f in fields(cls)}
    for name, value in values.items():
        if not _is_a(value, types[name]):
            raise ValueError(f"bad {file_name.removesuffix('.json')} setting: {name} must be "
                             f"{types[name]}, not {json.dumps(value)[:60]}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad {file_name.removesuffix('.json')} setting: {exc}") from None


_KINDS = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,),
          "None": (type(None),)}


def _is_a(value: object, annotation: str) -> bool:
    """Whether a JSON value fits a field annotated `float | None`, `int`, `bool`, `str`..."""
    kinds = [_KINDS[part.strip()] for part in annotation.split("|")]
    if isinstance(value, bool):
        return (bool,) in kinds
    return any(isinstance(value, kind) for kind in kinds)


def _env_value(text: str, cls: type, name: str, var: str) -> object:
    """An environment variable's value: JSON (numbers, true/false, null), else the text for a
    string setting."""
    if isinstance(getattr(cls, name, None), str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(f"{var}={text!r}: expected a number, true, false or null") from None


def load_settings(**overrides: float | None) -> Settings:
    """The engine's settings (see `layered`; `settings.json` in the config directory)."""
    return layered(Settings, "settings.json", **overrides)


def load_profiles(*paths: Path) -> dict[str, Profile]:
    """The shipped profiles, extended or overridden by the config directory's `profiles.json`,
    then by `paths`."""
    directory = config_dir()
    sources: list[Path | Traversable] = [defaults() / "profiles.json"]
    if directory is not None and (directory / "profiles.json").is_file():
        sources.append(directory / "profiles.json")
    profiles: dict[str, Profile] = {}
    for path in (*sources, *paths):
        for name, spec in read_json(path).items():
            try:
                profiles[name] = Profile(name=name, **spec)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}: profile {name!r}: {exc}") from None
    return profiles


def scenario_dirs() -> list[Path | Traversable]:
    """Where simulator presets (`<name>.json`) are looked up, in order."""
    directory = config_dir()
    dirs: list[Path | Traversable] = []
    if directory is not None:
        dirs.append(directory / "scenarios")
    return [*dirs, defaults() / "scenarios"]
