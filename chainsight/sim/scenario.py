"""Scenario parameters for the simulator, presets and time helpers."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from chainsight.config import Profile, load_profiles, read_json, scenario_dirs
from chainsight.contract.times import parse_time

#: Product profiles, as the engine loads them.
PROFILES: dict[str, Profile] = load_profiles()



@dataclass(frozen=True)
class Scenario:
    """Everything that shapes one simulation run; same scenario + seed -> same output.

    Fault fields come in pairs: ``*_rate`` is a fraction of shipments, ``*_count`` (when not
    None) is an exact number and wins. Ranges are ``(low, high)`` tuples.
    """

    name: str = "default"
    seed: int = 7
    shipments: int = 1000
    hubs: int = 8
    customers: int = 64
    cold_stores: int = 8
    start: str = "2026-11-25T08:00:00.000Z"
    duration: str = "1h"
    release_span: float = 0.6  # orders are created over this fraction of the duration
    gps_interval_s: float = 10.0
    sensor_interval_s: float = 60.0
    ts_format: str = "iso"  # "iso" or "ms"
    profile_mix: dict[str, float] = field(
        default_factory=lambda: {
            "pharma_2_8": 0.3,
            "frozen": 0.2,
            "chilled_food": 0.35,
            "ambient": 0.15,
        }
    )
    destination_mix: dict[str, float] = field(
        default_factory=lambda: {"customer": 0.7, "cold_store": 0.15, "hub": 0.15}
    )
    hub_radius_m: float = 600.0
    customer_radius_m: float = 250.0
    cold_store_radius_m: float = 350.0
    corridor_width_m: float = 300.0
    hub_dwell_max_min: float = 120.0
    # minutes a truck waits at its destination's dock before unloading, times how busy the
    # docks are at that time of day (busiest late morning; x1.5 at hubs); (0, 0): no wait
    dock_wait_min: tuple[float, float] = (0.0, 0.0)
    gps_accuracy_m: float = 5.0  # median reported accuracy; noise sigma = accuracy / 2
    door_openings_per_h: float = 0.4  # en-route door openings (brief, inside the profile)
    cancel_rate: float = 0.005
    # faults
    excursion_rate: float = 0.01
    excursion_count: int | None = None
    excursion_factor: tuple[float, float] = (1.6, 2.5)  # x profile excursion_min
    short_excursion_rate: float = 0.01
    short_excursion_count: int | None = None
    short_excursion_factor: tuple[float, float] = (0.2, 0.55)
    silence_rate: float = 0.005
    silence_count: int | None = None
    silence_min: tuple[float, float] = (13.0, 25.0)
    clock_skew_rate: float = 0.005
    clock_skew_count: int | None = None
    clock_skew_s: tuple[float, float] = (30.0, 600.0)  # magnitude; sign is random
    clock_skew_max_ahead_s: float = 120.0  # cap for clocks running ahead (see truth notes)
    offline_rate: float = 0.005
    offline_count: int | None = None
    offline_min: tuple[float, float] = (3.0, 12.0)
    duplicate_rate: float = 0.001  # fraction of all events re-sent with the same event_id
    gps_outlier_rate: float = 0.0005  # fraction of fixes displaced by 0.5-5 km

    @cached_property
    def start_ms(self) -> int:
        """Scenario start as epoch milliseconds."""
        return parse_time(self.start)

    @cached_property
    def duration_ms(self) -> int:
        """Scenario length in milliseconds."""
        return int(round(parse_duration(self.duration) * 1000))

    @cached_property
    def end_ms(self) -> int:
        """Exclusive end of the event-time window (epoch ms)."""
        return self.start_ms + self.duration_ms

    def replace(self, **changes: Any) -> Scenario:
        """Return a copy with some fields changed (validated)."""
        return _build(dataclasses.asdict(self) | changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the parameters."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _build(values: dict[str, Any]) -> Scenario:
    known = {f.name: f for f in dataclasses.fields(Scenario)}
    unknown = sorted(k for k in values if k not in known and not k.startswith("_"))
    if unknown:
        raise ValueError(f"unknown scenario field(s): {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    defaults = Scenario()
    for k, v in values.items():
        if k not in known:
            continue
        if isinstance(v, list):
            v = tuple(v)
        _check_type(k, v, getattr(defaults, k))
        clean[k] = v
    scn = Scenario(**clean)
    _validate(scn)
    return scn


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_type(name: str, value: Any, default: Any) -> None:
    """Refuse a field whose value is not of its default's kind (ints may stand for floats;
    the optional ``*_count`` fields take an int or null)."""
    if default is None or isinstance(default, int):
        ok = (value is None and default is None) or (
            isinstance(value, int) and not isinstance(value, bool))
        kind = "an integer or null" if default is None else "an integer"
    elif isinstance(default, float):
        ok, kind = _is_number(value), "a number"
    elif isinstance(default, str):  # times and durations may also be numbers
        ok, kind = isinstance(value, str) or _is_number(value), "a string"
    elif isinstance(default, tuple):
        ok = isinstance(value, tuple) and len(value) == 2 and all(map(_is_number, value))
        kind = "a [low, high] pair of numbers"
    else:  # the mixes: name -> weight
        weights = list(value.values()) if isinstance(value, dict) else [None]
        ok = all(_is_number(w) and w >= 0 for w in weights) and sum(weights) > 0
        kind = "an object of weights (numbers >= 0, not all 0)"
    if not ok:
        raise ValueError(f"scenario field {name!r} must be {kind}, not {value!r}")


def _validate(s: Scenario) -> None:
    if s.shipments < 1 or s.hubs < 2 or s.customers < 1:
        raise ValueError("need shipments >= 1, hubs >= 2 and customers >= 1")
    if s.ts_format not in ("iso", "ms"):
        raise ValueError("ts_format must be 'iso' or 'ms'")
    if s.duration_ms <= 0 or s.gps_interval_s <= 0 or s.sensor_interval_s <= 0:
        raise ValueError("duration and intervals must be positive")
    for p in s.profile_mix:
        if p not in PROFILES:
            raise ValueError(f"unknown product profile {p!r} in profile_mix (add it to "
                             "profiles.json in the config directory, CHAINSIGHT_CONFIG_DIR)")
    for k in s.destination_mix:
        if k not in ("customer", "cold_store", "hub"):
            raise ValueError(f"unknown destination kind {k!r}")
    lo, hi = s.excursion_factor
    if lo < 1.5 or hi < lo:
        raise ValueError("excursion_factor must be >= 1.5x excursion_min (unambiguous truth)")
    lo, hi = s.short_excursion_factor
    if hi > 0.6 or lo < 0 or hi < lo:
        raise ValueError("short_excursion_factor must lie within 0..0.6x excursion_min")
    lo, hi = s.dock_wait_min
    if lo < 0 or hi < lo:
        raise ValueError("dock_wait_min must be a [low, high] range of minutes >= 0")
    if s.silence_min[0] < 11:
        raise ValueError("silence_min must exceed the 10-minute sensor_silent rule (>= 11)")
    parse_time(s.start)


def load_scenario(name_or_path: str | Path | None = None, **overrides: Any) -> Scenario:
    """Load a preset by name (``<name>.json`` in the config directory's ``scenarios/`` or the
    shipped ones) or path; kwargs override fields.

    Overrides that are None are ignored (handy for optional CLI flags; use
    ``Scenario.replace`` to set a field to None). ``None`` or ``"default"`` without a preset
    file gives the dataclass defaults.
    """
    values: dict[str, Any] = {}
    if name_or_path is not None:
        p: Path | Traversable = Path(name_or_path)
        if p.suffix != ".json" or not p.is_file():
            p = next(
                (d / f"{name_or_path}.json" for d in scenario_dirs()
                 if (d / f"{name_or_path}.json").is_file()),
                p,
            )
        if p.is_file():
            values = read_json(p)
            values.setdefault("name", p.name.removesuffix(".json"))
        elif str(name_or_path) != "default":
            raise FileNotFoundError(f"scenario {name_or_path!r} not found (tried {p})")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _build(values)


_DUR = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def parse_duration(value: str | float | int) -> float:
    """Parse ``"1h"``, ``"30m"``, ``"1h30m"``, ``"90s"`` or a number of seconds -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    for m in _DUR.finditer(text):
        if text[pos:m.start()].strip():
            break
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"bad duration {value!r} (use e.g. 90s, 30m, 1h, 1h30m)")
    return total
