"""The rules over one state and one alert book: rows in event-time order in, transitions out.

The engine keeps one pipeline for the settled, in-order results, and in live runtimes a second,
provisional one that runs ahead of it on every event as it arrives (see `engine.live`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.config import Profile, Settings
from chainsight.contract.events import GPS, ORDER_STATUSES, SCAN, SENSOR, Order, Scan
from chainsight.engine.state import State
from chainsight.eta.model import EtaModel
from chainsight.eta.published import Etas
from chainsight.geofence import FenceSet
from chainsight.ingest.arrival import ArrivalDelays
from chainsight.ingest.rows import Rows
from chainsight.rules import default_rules
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import Rule
from chainsight.rules.eta import EtaRule
from chainsight.rules.geofence import GeofenceRule

IN_TRANSIT = frozenset({"shipped", "in_transit"})
STATUSES = ORDER_STATUSES  # a scan's status (in transit, delivered) is one of them too
STATUS_OF_SCAN = {"loaded": "in_transit", "delivered": "delivered"}

BusinessEvents = Callable[[int], Scan | Order]  # seq -> the scan/order of that row


@dataclass
class Transitions:
    """What a pipeline produced: alert transitions (each with its event time in ms),
    notifications, audit entries, ETAs published and the shipments whose state changed."""

    alerts: list[tuple[int, dict]] = field(default_factory=list)
    notifications: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    etas: list[Etas] = field(default_factory=list)
    changed: set[int] = field(default_factory=set)


@numba.njit(cache=True)
def track_kernel(kind: np.ndarray, device: np.ndarray, ship: np.ndarray, ts: np.ndarray,
                 lat: np.ndarray, lon: np.ndarray, temp: np.ndarray, link: np.ndarray,
                 last_lat: np.ndarray, last_lon: np.ndarray, pos_ts: np.ndarray,
                 last_temp: np.ndarray, temp_ts: np.ndarray, prev_lat: np.ndarray,
                 prev_lon: np.ndarray, moved_in: np.ndarray, segment: int) -> None:
    """Resolve each row's shipment (explicit id, else the device's link; the latest link wins)
    and keep each shipment's last position and temperature, and its position before its
    first fix in this segment of rows (for positions at a time within it)."""
    for i in range(len(ts)):
        d = device[i]
        if ship[i] >= 0:
            link[d] = ship[i]
        else:
            ship[i] = link[d]
        s = ship[i]
        if s < 0:
            continue
        if kind[i] == GPS and ts[i] >= pos_ts[s]:
            if moved_in[s] != segment:
                prev_lat[s], prev_lon[s], moved_in[s] = last_lat[s], last_lon[s], segment
            last_lat[s], last_lon[s], pos_ts[s] = lat[i], lon[i], ts[i]
        elif kind[i] == SENSOR and not np.isnan(temp[i]) and ts[i] >= temp_ts[s]:
            last_temp[s], temp_ts[s] = temp[i], ts[i]


def business_phases(business: np.ndarray, shipment: np.ndarray,
                    device: np.ndarray) -> np.ndarray:
    """Processing phase of each row of an event-time-ordered batch.

    A business event (scan/order) only changes its own shipment's state, so it must be applied
    after that shipment's earlier device rows and before its later ones; other shipments' rows
    need not wait for it. The pipeline runs phase 0's device rows, then the phase-1 business
    rows, then phase 1's device rows, and so on: a few kernel calls per batch instead of one
    per business event. So a business row's phase is above the phases of its shipment's
    earlier rows; a device row's phase is at least that of its shipment's earlier business
    rows and of its device's earlier rows (a device's rows stay in time order even when one of
    them names another shipment); a device row without an explicit shipment (linked by an
    order's `device_ids`) waits for every business row before it.
    """
    return _phases(business, shipment >= 0, shipment, device)


@numba.njit(cache=True)
def _phases(business: np.ndarray, linked: np.ndarray, shipment: np.ndarray,
            device: np.ndarray) -> np.ndarray:
    """`business_phases` over dense shipment and device ids (-1: none)."""
    n = len(shipment)
    ship, dev = shipment.astype(np.int64) + 1, device.astype(np.int64) + 1
    phase = np.zeros(n, dtype=np.int64)
    # highest phase of a shipment's rows so far, and a device's
    ship_phase = np.zeros(ship.max() + 1 if n else 1, dtype=np.int64)
    dev_phase = np.zeros(dev.max() + 1 if n else 1, dtype=np.int64)
    newest_business = 0
    for i in range(n):
        s = ship[i]
        if business[i]:
            p = ship_phase[s] + 1
            newest_business = max(newest_business, p)
        elif linked[i]:
            p = max(ship_phase[s], dev_phase[dev[i]])
        else:
            p = max(newest_business, dev_phase[dev[i]])
        if linked[i]:
            ship_phase[s] = max(ship_phase[s], p)
        if not business[i]:
            dev_phase[dev[i]] = p
        phase[i] = p
    return phase


class Pipeline:
    """A state, an alert book and the rules over them."""

    def __init__(self, settings: Settings, profiles: dict[str, Profile], state: State,
                 rules: list[Rule] | None = None, fences: FenceSet | None = None,
                 audited: bool = True, eta_model: EtaModel | None = None,
                 arrival: ArrivalDelays | None = None) -> None:
        """`eta_model`: the ETA model the default rules share (the audited pipeline's
        learns from it); `arrival`: the arrival delays a live pipeline's rules allow for."""
        self.settings = settings
        self.profiles = profiles
        self.state = state
        self.book = AlertBook.from_settings(settings, audited=audited)
        self.advisor = ColdStoreAdvisor(fences)  # `advisor.fences` may be set later
        self.rules: list[Rule] = rules if rules is not None else default_rules(
            settings, self.advisor, eta_model, learns=audited, arrival=arrival)
        if fences is not None and rules is None:
            self.rules.append(GeofenceRule(fences, settings))
        self.eta = next((r for r in self.rules if isinstance(r, EtaRule)), None)

    def run(self, rows: Rows, business: BusinessEvents, clock: int, out: Transitions) -> None:
        """Process rows (in event-time order), then let event time reach `clock`."""
        if len(rows):
            self.state.grow()
            phase = business_phases(rows.kind >= SCAN, rows.shipment, rows.device)
            device_rows = rows.kind < SCAN
            for k in range(int(phase.max()) + 1):
                take = np.flatnonzero(device_rows & (phase == k))
                if len(take):
                    self._device_rows(rows.take(take), out)
                take = np.flatnonzero(~device_rows & (phase == k + 1))
                if len(take):
                    self._business_rows(rows.take(take), business, out)
        self.tick(clock, out)
        self.state.segment += 1  # its rows are done: positions are the last ones now

    def tick(self, clock: int, out: Transitions) -> None:
        """Event time reached `clock`: fire time-driven conditions."""
        st = self.state
        st.clock = max(st.clock, clock)
        for rule in self.rules:
            rule.on_clock(st.clock, st, self.book)
        self.book.on_clock(st.clock)
        self.collect(out)

    def collect(self, out: Transitions) -> Transitions:
        """Move the book's new transitions, notifications and audit entries into `out`; the
        shipments they concern count as changed."""
        alerts, notifications, audit = self.book.collect()
        out.alerts += alerts
        out.notifications += notifications
        out.audit += audit
        if self.eta is not None:
            etas, changed = self.eta.collect()
            out.etas += etas
            out.changed |= changed
        index = self.state.shipments.index
        for record in [r for _, r in alerts] + notifications:
            s = index.get(record["shipment_id"])
            if s is not None:
                out.changed.add(s)
        return out

    def replace_fences(self, fences: FenceSet) -> None:
        """Swap the geofences while running; state of unchanged fences carries over."""
        self.advisor.fences = fences
        rule = next((r for r in self.rules if isinstance(r, GeofenceRule)), None)
        if rule is None:
            self.rules.append(GeofenceRule(fences, self.settings))
        else:
            rule.replace_fences(fences)

    def copy_entities(self, src: Pipeline, shipments: np.ndarray, devices: np.ndarray) -> None:
        """Make the rule state of these shipments and devices (dense ids) and their alerts equal
        to `src`'s, a pipeline of the same configuration sharing this one's registries; every
        other entity's state stays as it is. The clock is not copied. `devices` should hold
        every device linked to these shipments in either pipeline (rules index a shipment's
        devices), and vice versa."""
        st = self.state
        if st.shipments is not src.state.shipments or st.devices is not src.state.devices:
            raise ValueError("copy_entities needs pipelines that share their name registries")
        st.copy_entities(src.state, shipments, devices)
        theirs = {rule.name: rule for rule in src.rules}
        for rule in self.rules:
            rule.copy_entities(theirs[rule.name], shipments, devices)
        ship_names, dev_names = st.shipments.names, st.devices.names
        self.book.copy_entities(src.book, {ship_names[s] for s in shipments.tolist()},
                                {dev_names[d] for d in devices.tolist()})

    def _device_rows(self, seg: Rows, out: Transitions) -> None:
        st, sh = self.state, self.state.shipment
        st.segment += 1
        track_kernel(seg.kind, seg.device, seg.shipment, seg.ts, seg.lat, seg.lon, seg.temp_c,
                     st.device.shipment, sh.last_lat, sh.last_lon, sh.last_pos_ts,
                     sh.last_temp_c, sh.last_temp_ts, sh.prev_lat, sh.prev_lon, sh.moved_in,
                     st.segment)
        self.advisor.segment(seg)
        for rule in self.rules:
            rule.on_rows(seg, st, self.book)
        touched = np.bincount(seg.shipment[seg.shipment >= 0], minlength=1)
        out.changed.update(np.flatnonzero(touched).tolist())

    def _business_rows(self, seg: Rows, business: BusinessEvents, out: Transitions) -> None:
        """A phase's business events (of distinct shipments, so their order among each other
        matters only for what the rules emit): the shipments' state first; then each rule that
        takes them one at a time gets at once those on which it emits nothing, and the rest
        one at a time, event by event and rule by rule, as if all went one at a time; then
        all at once to every rule's `on_business_rows`."""
        events = list(map(business, seg.seq.tolist()))
        ships = seg.shipment.tolist()
        for event, s in zip(events, ships, strict=True):
            self._business(event, s)
        out.changed.update(ships)
        one_at_a_time = [rule for rule in self.rules
                         if type(rule).on_business is not Rule.on_business]
        shipments = seg.shipment.astype(np.int64)
        loud = [rule.on_quiet_business(seg, events, shipments, self.state)
                for rule in one_at_a_time]
        for j in np.flatnonzero(np.logical_or.reduce(loud, axis=0)).tolist() if loud else ():
            for rule, rule_loud in zip(one_at_a_time, loud, strict=True):
                if rule_loud[j]:
                    rule.on_business(events[j], ships[j], self.state, self.book)
        for rule in self.rules:
            rule.on_business_rows(seg, events, self.state, self.book)

    def _business(self, event: Scan | Order, s: int) -> None:
        """The shipment's own state after its scan or order."""
        st = self.state
        info = st.info[s]
        if type(event) is Order:
            info.status = event.status
            info.order_id = event.order_id
            for name in ("customer_id", "weight_kg", "mode", "sscc", "gtin"):
                if getattr(event, name) is not None:
                    setattr(info, name, getattr(event, name))
            if event.promised_by is not None:
                info.promised_by = event.promised_by
            if event.origin is not None:
                info.origin = (event.origin.lat, event.origin.lon)
            if event.destination is not None:
                info.destination = (event.destination.lat, event.destination.lon)
            if event.lot is not None:
                info.lot = event.lot
            if event.product_profile is not None:
                self._set_profile(s, event.product_profile)
            for device in event.device_ids or ():
                d = st.device_id(device)  # may grow the columns: index them afterwards
                st.device.shipment[d] = s
        elif event.step in STATUS_OF_SCAN:
            info.status = STATUS_OF_SCAN[event.step]
        st.shipment.in_transit[s] = info.status in IN_TRANSIT

    def _set_profile(self, s: int, name: str) -> None:
        self.state.info[s].profile = name
        profile = self.profiles.get(name)
        sh = self.state.shipment
        if profile is None:  # unknown profile: kept as a name, no limits to check
            sh.min_c[s], sh.max_c[s], sh.excursion_ms[s] = np.nan, np.nan, -1
        else:
            sh.min_c[s], sh.max_c[s] = profile.min_c, profile.max_c
            sh.excursion_ms[s] = int(profile.excursion_min * 60_000)
        for rule in self.rules:
            rule.on_profile(s, profile, self.state)

    def dump_state(self) -> dict:
        """The book's and rules' state (the state itself is the engine's to dump)."""
        return {"book": self.book.dump_state(),
                "rules": {rule.name: rule.dump_state() for rule in self.rules}}

    def load_state(self, data: dict) -> None:
        """A rule without state in `data` (one added to the configuration since) starts
        empty."""
        self.book.load_state(data["book"])
        rules = data["rules"]
        for rule in self.rules:
            if rule.name in rules:
                rule.load_state(rules[rule.name])
