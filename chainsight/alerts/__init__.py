"""Alert rules, the alert lifecycle (`AlertBook`) and its audit trail."""

from __future__ import annotations

from chainsight.alerts.advisor import ColdStoreAdvisor
from chainsight.alerts.cumulative import CumulativeRule
from chainsight.alerts.door import DoorRule
from chainsight.alerts.excursion import ExcursionRule
from chainsight.alerts.humidity import HumidityRule
from chainsight.alerts.mkt import MktRule
from chainsight.alerts.rules import Rule
from chainsight.alerts.silence import SilenceRule
from chainsight.config import Profile, Settings


def default_rules(settings: Settings, profiles: dict[str, Profile],
                  advisor: ColdStoreAdvisor) -> list[Rule]:
    """The cold-chain and silence rules, the advisor first (it follows positions for them)."""
    return [advisor, ExcursionRule(advisor), HumidityRule(profiles, advisor),
            CumulativeRule(profiles, advisor), MktRule(profiles, advisor),
            DoorRule(profiles, advisor), SilenceRule(settings.sensor_silent_ms)]
