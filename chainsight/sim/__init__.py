"""Deterministic device simulators for ChainSight: a fulfilment network with faults and truth.

    from chainsight.sim import simulate, run, JsonlFileSink
    sim = simulate("demo", seed=1)
    run(sim, JsonlFileSink("events.jsonl"))
    sim.write_ground_truth("truth.json"); sim.write_fences("fences.geojson")
"""

from chainsight.contract.times import parse_time

from .scenario import PROFILES, Profile, Scenario, load_scenario, parse_duration
from .simulation import Simulation, simulate
from .sinks import CallableSink, JsonlFileSink, MemorySink, Sink, run
from .truth import score_alerts

__all__ = [
    "PROFILES",
    "CallableSink",
    "JsonlFileSink",
    "MemorySink",
    "Profile",
    "Scenario",
    "Simulation",
    "Sink",
    "load_scenario",
    "parse_duration",
    "parse_time",
    "run",
    "score_alerts",
    "simulate",
]
