"""Rules: each turns batches of rows, business events and the passing of event time into alert
conditions (one module per rule, a Numba kernel each); `base` is what they share."""

from __future__ import annotations

from chainsight.config import Settings
from chainsight.eta.model import EtaModel
from chainsight.ingest.arrival import ArrivalDelays
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import Rule
from chainsight.rules.cumulative import CumulativeRule
from chainsight.rules.door import DoorRule
from chainsight.rules.eta import EtaRule
from chainsight.rules.excursion import ExcursionRule
from chainsight.rules.humidity import HumidityRule
from chainsight.rules.mkt import MktRule
from chainsight.rules.silence import SilenceRule


def default_rules(settings: Settings, advisor: ColdStoreAdvisor,
                  eta_model: EtaModel | None = None, learns: bool = True,
                  arrival: ArrivalDelays | None = None) -> list[Rule]:
    """The cold-chain and silence rules (the cold-chain ones ask `advisor` for actions; the
    live pipeline's silence rule `arrival` for sensors whose readings arrive late), and with
    `eta_model` the ETA rule (which learns, when `learns`, and reads corridors from the
    advisor's fences)."""
    rules = [ExcursionRule(advisor), HumidityRule(advisor), CumulativeRule(advisor),
             MktRule(advisor), DoorRule(advisor),
             SilenceRule(settings.sensor_silent_ms, arrival, settings.allowed_lateness_ms)]
    if eta_model is not None:
        rules.append(EtaRule(eta_model, settings, advisor, learns))
    return rules
