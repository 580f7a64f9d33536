"""Humidity excursion (`humidity`): relative humidity continuously outside the profile's
humidity_min..humidity_max for the profile's `excursion_min`; the continuous rule's timing over
`humidity_pct`. Profiles without a humidity range are not checked."""

from __future__ import annotations

import numpy as np

from chainsight.config import Profile
from chainsight.engine.state import Columns, State
from chainsight.ingest.rows import Rows
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.excursion import ExcursionRule


class HumidityRule(ExcursionRule):
    name = "humidity"
    rule = "humidity"
    unit = "pct"  # details: max_pct / min_pct / limit_pct
    shipment_state = ("run", "limits")

    def __init__(self, advisor: ColdStoreAdvisor | None = None) -> None:
        super().__init__(advisor)
        self.limits = Columns(lo=(np.float64, np.nan), hi=(np.float64, np.nan))

    def _inputs(self, rows: Rows, state: State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.limits.ensure(len(state.shipments))
        return rows.humidity, self.limits.lo, self.limits.hi

    def on_profile(self, shipment: int, profile: Profile | None, state: State) -> None:
        self.limits.ensure(len(state.shipments))
        has = profile is not None and profile.humidity_min is not None
        self.limits.lo[shipment] = profile.humidity_min if has else np.nan
        self.limits.hi[shipment] = profile.humidity_max if has else np.nan
