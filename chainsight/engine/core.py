"""The processing core: batches of raw events in, alert transitions, dead letters and state out.

It knows nothing of files, Kafka, Redis or HTTP; the embedded runtime, `replay` and the Faust
workers all drive this one class.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
import numba
import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.config import Profile, Settings, load_profiles, load_settings
from chainsight.contract.commands import (
    Acknowledge,
    Command,
    CommandRefused,
    ReplaceFences,
    Resolve,
)
from chainsight.contract.events import GPS, ORDER_STATUSES, SCAN, SENSOR, EventDecoder, Order, Scan
from chainsight.contract.times import iso, iso_many, now_ms
from chainsight.engine.state import NO_TS, State
from chainsight.geofence import FenceError, FenceSet
from chainsight.ingest.columnar import Extracted
from chainsight.ingest.dedup import Decoded, Ingest
from chainsight.ingest.idset import IdWindow
from chainsight.ingest.reorder import Reorder
from chainsight.ingest.rows import Rows
from chainsight.rules import default_rules
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import Rule
from chainsight.rules.geofence import GeofenceRule

IN_TRANSIT = frozenset({"shipped", "in_transit"})
STATUSES = ORDER_STATUSES  # a scan's status (in transit, delivered) is one of them too
STATUS_OF_SCAN = {"loaded": "in_transit", "delivered": "delivered"}


@dataclass
class Output:
    """What one call into the engine produced."""

    alerts: list[dict] = field(default_factory=list)  # the contract's alert transitions
    notifications: list[dict] = field(default_factory=list)  # escalations, severity raises
    audit: list[dict] = field(default_factory=list)  # audit-trail entries appended, with hash
    dead_letters: list[dict] = field(default_factory=list)
    late: Rows | None = None  # accepted but too late for rules: history only
    changed: set[int] = field(default_factory=set)  # shipments whose live state changed

    def extend(self, other: Output) -> Output:
        """This output followed by `other` (what two engine calls produced together)."""
        self.alerts += other.alerts
        self.notifications += other.notifications
        self.audit += other.audit
        self.dead_letters += other.dead_letters
        self.changed |= other.changed
        return self


@numba.njit(cache=True)
def track_kernel(kind: np.ndarray, device: np.ndarray, ship: np.ndarray, ts: np.ndarray,
                 lat: np.ndarray, lon: np.ndarray, temp: np.ndarray, link: np.ndarray,
                 last_lat: np.ndarray, last_lon: np.ndarray, pos_ts: np.ndarray,
                 last_temp: np.ndarray, temp_ts: np.ndarray) -> None:
    """Resolve each row's shipment (explicit id, else the device's link; the latest link wins)
    and keep each shipment's last position and temperature."""
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
            last_lat[s], last_lon[s], pos_ts[s] = lat[i], lon[i], ts[i]
        elif kind[i] == SENSOR and not np.isnan(temp[i]) and ts[i] >= temp_ts[s]:
            last_temp[s], temp_ts[s] = temp[i], ts[i]


@numba.njit(cache=True)
def live_kernel(kind: np.ndarray, device: np.ndarray, ship: np.ndarray, ts: np.ndarray,
                lat: np.ndarray, lon: np.ndarray, temp: np.ndarray, status: np.ndarray,
                link_row: np.ndarray, link_device: np.ndarray, link_ship: np.ndarray,
                link: np.ndarray, live_lat: np.ndarray, live_lon: np.ndarray,
                pos_ts: np.ndarray, live_temp: np.ndarray, temp_ts: np.ndarray,
                live_status: np.ndarray, status_ts: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The live view, as events arrive (not in event-time order): each row's shipment (its
    own, else its device's latest link, an order's `device_ids` linking the rows after it),
    and per shipment the newest position, temperature, status and event time seen, so a late
    event never overwrites a newer value. Returns the rows' shipments."""
    resolved = ship.copy()
    j = 0
    for i in range(len(ts)):
        while j < len(link_row) and link_row[j] < i:
            link[link_device[j]] = link_ship[j]
            j += 1
        s = ship[i]
        if kind[i] <= SENSOR:
            if s >= 0:
                link[device[i]] = s
            else:
                s = resolved[i] = link[device[i]]
        if s < 0:
            continue
        seen[s] = max(seen[s], ts[i])
        if kind[i] == GPS and ts[i] >= pos_ts[s]:
            live_lat[s], live_lon[s], pos_ts[s] = lat[i], lon[i], ts[i]
        elif kind[i] == SENSOR and not np.isnan(temp[i]) and ts[i] >= temp_ts[s]:
            live_temp[s], temp_ts[s] = temp[i], ts[i]
        elif status[i] >= 0 and ts[i] >= status_ts[s]:
            live_status[s], status_ts[s] = status[i], ts[i]
    while j < len(link_row):
        link[link_device[j]] = link_ship[j]
        j += 1
    return resolved


def business_phases(business: np.ndarray, shipment: np.ndarray,
                    device: np.ndarray) -> np.ndarray:
    """Processing phase of each row of an event-time-ordered batch.

    A business event (scan/order) only changes its own shipment's state, so it must be applied
    after that shipment's earlier device rows and before its later ones; other shipments' rows
    need not wait for it. The engine runs phase 0's device rows, then the phase-1 business rows,
    then phase 1's device rows, and so on: a few kernel calls per batch instead of one per
    business event. So a business row's phase is above the phases of its shipment's earlier
    rows; a device row's phase is at least that of its shipment's earlier business rows and of
    its device's earlier rows (a device's rows stay in time order even when one of them names
    another shipment); a device row without an explicit shipment (linked by an order's
    `device_ids`) waits for every business row before it.
    """
    _, ship = np.unique(shipment, return_inverse=True)
    _, dev = np.unique(device, return_inverse=True)
    return _phases(business, shipment >= 0, ship.astype(np.int64), dev.astype(np.int64))


@numba.njit(cache=True)
def _phases(business: np.ndarray, linked: np.ndarray, ship: np.ndarray,
            dev: np.ndarray) -> np.ndarray:
    """`business_phases` over batch-local shipment and device numbers (0..n-1)."""
    n = len(ship)
    phase = np.zeros(n, dtype=np.int64)
    ship_phase = np.zeros(n, dtype=np.int64)  # highest phase of a shipment's rows so far
    dev_phase = np.zeros(n, dtype=np.int64)
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


class Engine:
    """Stateful processing core: call `process` with raw lines, then `flush` at end of stream."""

    def __init__(self, settings: Settings | None = None,
                 profiles: dict[str, Profile] | None = None,
                 rules: list[Rule] | None = None, fences: FenceSet | None = None,
                 ids_from: Engine | None = None) -> None:
        """`ids_from`: an engine whose name registries this one shares (same names, same dense
        ids), as a provisional copy of it must for `copy_entities`."""
        self.settings = settings or load_settings()
        self.profiles = profiles if profiles is not None else load_profiles()
        self.state = State() if ids_from is None else State.sharing_ids(ids_from.state)
        self.book = AlertBook.from_settings(self.settings)
        self.advisor = ColdStoreAdvisor(fences)  # `advisor.fences` may be set later
        self.ingest = Ingest(self.state,
                             EventDecoder(self.settings.max_payload_bytes,
                                          int(self.settings.future_tolerance_h * 3_600_000)),
                             IdWindow(int(self.settings.dedup_window_min * 60_000)))
        self.reorder = Reorder(self.settings.allowed_lateness_ms)
        self._idle_time = NO_TS  # stream time an idle stream has moved on to (`advance`)
        self._arrival = (0, NO_TS)  # wall clock and stream time at the latest arrival
        self.business: dict[int, Scan | Order] = {}  # seq -> scan/order held for reordering
        self.rules: list[Rule] = rules if rules is not None else default_rules(
            self.settings, self.profiles, self.advisor)
        if fences is not None and rules is None:
            self.rules.append(GeofenceRule(fences, self.settings))
        self._counters = {"events": 0, "rejected": 0, "duplicates": 0, "late_dropped": 0}

    def process(self, lines: Iterable[bytes], first_line: int = 1,
                now: int | None = None) -> Output:
        """Ingest raw JSON lines (arrival order) and process whatever became safe to process.
        `now` is the runtime's clock at arrival (epoch ms; default the wall clock): events
        more than `future_tolerance_h` ahead of it are rejected, and an idle stream's time
        moves on from it (`advance`)."""
        now = now_ms() if now is None else now
        return self._admit(self.ingest.decode(lines, first_line, now), now)

    def process_extracted(self, batch: Extracted, now: int | None = None) -> Output:
        """`process` for lines already decoded and extracted (possibly in another process)."""
        return self._admit(self.ingest.columns(batch), now_ms() if now is None else now)

    @property
    def stream_time(self) -> int:
        """The stream's event time (see `Reorder.stream_time`), or where an idle stream has
        moved it on to."""
        return max(self.reorder.stream_time, self._idle_time)

    def _admit(self, decoded: Decoded, now: int) -> Output:
        counters = self._counters
        counters["events"] += decoded.valid
        counters["rejected"] += len(decoded.dead_letters)
        counters["duplicates"] += decoded.duplicates
        self.business.update(decoded.business)
        late = self.reorder.admit(decoded.rows)
        for seq in late.seq[late.kind >= SCAN].tolist():
            del self.business[seq]
        if len(decoded.rows):
            self._arrival = (now, self.reorder.stream_time)
        counters["late_dropped"] = self.reorder.late_dropped
        live = self._live(decoded)
        out = self._run(self.reorder.release())
        out.changed |= live
        out.dead_letters = decoded.dead_letters
        out.late = late
        return out

    def _live(self, decoded: Decoded) -> set[int]:
        """Update the live view with every accepted event at once, in arrival order, whatever
        the lateness; returns the shipments it changed."""
        rows, st = decoded.rows, self.state
        if not len(rows):
            return set()
        status = np.full(len(rows), -1, np.int8)
        links: list[tuple[int, int, int]] = []  # row, device, shipment of orders' device_ids
        business = np.flatnonzero(rows.kind >= SCAN)
        for i, s, seq in zip(business.tolist(), rows.shipment[business].tolist(),
                             rows.seq[business].tolist(), strict=True):
            event = decoded.business[seq]
            name = event.status if type(event) is Order else STATUS_OF_SCAN.get(event.step)
            status[i] = -1 if name is None else STATUSES.index(name)
            links += [(i, st.device_id(d), s) for d in getattr(event, "device_ids", None) or ()]
        st.grow()
        link_row, link_device, link_ship = np.array(links, np.int64).reshape(-1, 3).T
        sh = st.shipment
        resolved = live_kernel(rows.kind, rows.device, rows.shipment, rows.ts, rows.lat,
                               rows.lon, rows.temp_c, status, link_row, link_device, link_ship,
                               st.device.live_shipment, sh.live_lat, sh.live_lon,
                               sh.live_pos_ts, sh.live_temp_c, sh.live_temp_ts, sh.live_status,
                               sh.live_status_ts, sh.last_seen)
        return set(np.unique(resolved[resolved >= 0]).tolist())

    def advance(self, now: int) -> Output:
        """A live runtime's tick (`now`: its clock, as given to `process`): an idle stream's
        time moves on by the time elapsed since its latest arrival, never jumping to the
        calendar, so time-driven rules still fire when devices fall silent, and a recording
        replayed fast gives the same results as `replay`."""
        wall, stream = self._arrival
        self._idle_time = max(self._idle_time, stream + max(0, now - wall))
        out = self._run(self.reorder.release(upto=self.stream_time))
        self._tick(self.stream_time - self.settings.allowed_lateness_ms, out)
        return out

    def flush(self, clock: int | None = None) -> Output:
        """End of stream: process everything still held for reordering; then event time is
        `clock` when given (the whole stream's time, for an engine that saw part of it)."""
        out = self._run(self.reorder.release(everything=True))
        if clock is not None:
            self._idle_time = max(self._idle_time, clock)
            self._tick(clock, out)
        return out

    def apply(self, command: Command) -> Output:
        """Carry out a user command; returns the transitions it made. CommandRefused (one line,
        nothing changed) for a command the engine cannot carry out, UnknownAlert (a subclass)
        for an alert it does not know. Callers on other threads hold the runtime's lock."""
        if type(command) is ReplaceFences:
            try:
                fences = FenceSet.from_geojson(command.geojson)
            except FenceError as exc:
                raise CommandRefused(str(exc)) from None
            self.replace_fences(fences)
            return self._collect(Output())
        at = self.state.clock if command.at is None else command.at
        if type(command) is Acknowledge:
            self.book.acknowledge(command.alert_id, command.user, at, command.comment,
                                  command.recorded_at)
        elif type(command) is Resolve:
            self.book.resolve_manually(command.alert_id, command.user, command.comment, at,
                                       command.recorded_at)
        else:
            raise CommandRefused(f"unknown command {type(command).__name__}")
        return self._collect(Output())

    def replace_fences(self, fences: FenceSet) -> None:
        """Swap the geofences while running; state of unchanged fences carries over."""
        self.advisor.fences = fences
        rule = next((r for r in self.rules if isinstance(r, GeofenceRule)), None)
        if rule is None:
            self.rules.append(GeofenceRule(fences, self.settings))
        else:
            rule.replace_fences(fences)

    def copy_entities(self, src: Engine, shipments: np.ndarray, devices: np.ndarray) -> None:
        """Make the rule state of these shipments and devices (dense ids) and their alerts equal
        to `src`'s, an engine of the same configuration sharing this one's registries; every
        other entity's state stays as it is. Ingest, reordering, held business events, counters
        and the clock are not copied. `devices` should hold every device linked to these
        shipments in either engine (rules index a shipment's devices), and vice versa."""
        st = self.state
        if st.shipments is not src.state.shipments or st.devices is not src.state.devices:
            raise ValueError("copy_entities needs engines that share their name registries")
        st.copy_entities(src.state, shipments, devices)
        theirs = {rule.name: rule for rule in src.rules}
        for rule in self.rules:
            rule.copy_entities(theirs[rule.name], shipments, devices)
        ship_names, dev_names = st.shipments.names, st.devices.names
        self.book.copy_entities(src.book, {ship_names[s] for s in shipments.tolist()},
                                {dev_names[d] for d in devices.tolist()})

    # --- queries (read-only; callers on other threads hold the runtime's lock) --------------

    @property
    def decoder(self) -> EventDecoder:
        """The decoder `process` uses (replay runs it in other processes)."""
        return self.ingest.decoder

    @property
    def counters(self) -> dict[str, int]:
        """The contract's counters: events, rejected, duplicates, late_dropped."""
        return dict(self._counters)

    def metrics(self) -> dict[str, int]:
        """Counters, open alerts by kind (`open_alerts.KIND`) and the rules' own counts."""
        out = dict(self._counters)
        out["shipments"] = len(self.state.shipments)
        for alert in self.book.open_alerts.values():
            name = f"open_alerts.{alert.kind}"
            out[name] = out.get(name, 0) + 1
        for rule in self.rules:
            out.update(rule.metrics())
        return out

    def alerts(self, state: str | None = None, kind: str | None = None,
               shipment_id: str | None = None, severity: str | None = None) -> list[dict]:
        """The current record of every alert remembered, newest first, filtered."""
        found = [a for a in self.book.alerts.values()
                 if (state is None or a.state == state) and (kind is None or a.kind == kind)
                 and (shipment_id is None or a.shipment_id == shipment_id)
                 and (severity is None or a.severity == severity)]
        found.sort(key=lambda a: (a.last_at, a.alert_id), reverse=True)
        return [a.current for a in found]

    def alert(self, alert_id: str) -> dict | None:
        """The current record of one alert, None when unknown."""
        alert = self.book.alerts.get(alert_id)
        return None if alert is None else alert.current

    def audit_trail(self, alert_id: str) -> list[dict]:
        """Every audit entry of one alert, oldest first."""
        return self.book.audit.history(alert_id)

    def verify_audit(self) -> bool:
        """Whether the audit trail kept in memory is intact (see `alerts.audit`)."""
        return self.book.audit.verify()

    def shipment_count(self) -> int:
        return len(self.state.shipments)

    def has_shipment(self, shipment_id: str) -> bool:
        return shipment_id in self.state.shipments.index

    def linked_shipment(self, device_id: str) -> str | None:
        """The shipment a device is linked to now, None when it is not."""
        st = self.state
        d = st.devices.index.get(device_id)
        s = -1 if d is None or d >= len(st.device.shipment) else int(st.device.shipment[d])
        return st.shipments.names[s] if s >= 0 else None

    def _run(self, rows: Rows) -> Output:
        out = Output()
        if not len(rows):
            return self._collect(out)
        self.state.grow()
        phase = business_phases(rows.kind >= SCAN, rows.shipment, rows.device)
        device_rows = rows.kind < SCAN
        for k in range(int(phase.max()) + 1):
            take = np.flatnonzero(device_rows & (phase == k))
            if len(take):
                self._device_rows(rows.take(take), out)
            for b in np.flatnonzero(~device_rows & (phase == k + 1)).tolist():
                self._business(self.business.pop(int(rows.seq[b])), int(rows.shipment[b]), out)
        self._tick(min(int(rows.ts[-1]), self.stream_time), out)  # not a wrong clock's time
        return out

    def _device_rows(self, seg: Rows, out: Output) -> None:
        st, sh = self.state, self.state.shipment
        track_kernel(seg.kind, seg.device, seg.shipment, seg.ts, seg.lat, seg.lon, seg.temp_c,
                     st.device.shipment, sh.last_lat, sh.last_lon, sh.last_pos_ts,
                     sh.last_temp_c, sh.last_temp_ts)
        for rule in self.rules:
            rule.on_rows(seg, st, self.book)
        touched = np.bincount(seg.shipment[seg.shipment >= 0], minlength=1)
        out.changed.update(np.flatnonzero(touched).tolist())

    def _business(self, event: Scan | Order, s: int, out: Output) -> None:
        st = self.state
        info = st.info[s]
        if type(event) is Order:
            info.status = event.status
            info.order_id = event.order_id
            for name in ("customer_id", "weight_kg", "mode"):
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
        for rule in self.rules:
            rule.on_business(event, s, st, self.book)
        out.changed.add(s)

    def _set_profile(self, s: int, name: str) -> None:
        self.state.info[s].profile = name
        profile = self.profiles.get(name)
        sh = self.state.shipment
        if profile is None:  # unknown profile: kept as a name, no limits to check
            sh.min_c[s], sh.max_c[s], sh.excursion_ms[s] = np.nan, np.nan, -1
        else:
            sh.min_c[s], sh.max_c[s] = profile.min_c, profile.max_c
            sh.excursion_ms[s] = int(profile.excursion_min * 60_000)

    def _tick(self, clock: int, out: Output) -> None:
        st = self.state
        st.clock = max(st.clock, clock)
        for rule in self.rules:
            rule.on_clock(st.clock, st, self.book)
        self.book.on_clock(st.clock)
        self.ingest.dedup.expire(st.clock)
        self._collect(out)

    def _collect(self, out: Output) -> Output:
        """Move the book's new transitions, notifications and audit entries into `out`; the
        shipments they concern count as changed."""
        alerts, notifications, audit = self.book.collect()
        out.alerts += alerts
        out.notifications += notifications
        out.audit += audit
        index = self.state.shipments.index
        for record in alerts + notifications:
            s = index.get(record["shipment_id"])
            if s is not None:
                out.changed.add(s)
        return out

    def shipment_views(self, ids: Iterable[int], settled: bool = False) -> dict[str, dict]:
        """The state of the shipments `ids` (dense ids) as in STATE.json, by shipment id: as
        the events seen so far show it (live: the newest event time wins), or as the in-order
        processing has settled it."""
        ids = np.fromiter(ids, np.int64)
        st, sh = self.state, self.state.shipment
        open_alerts: dict[str | None, list[str]] = {}
        for alert in self.book.open_alerts.values():
            open_alerts.setdefault(alert.shipment_id, []).append(alert.alert_id)
        if settled:
            lats, lons, pos_ts, temps = sh.last_lat, sh.last_lon, sh.last_pos_ts, sh.last_temp_c
            status = [st.info[s].status for s in ids.tolist()]
        else:
            lats, lons, pos_ts, temps = sh.live_lat, sh.live_lon, sh.live_pos_ts, sh.live_temp_c
            status = [None if c < 0 else STATUSES[c] for c in sh.live_status[ids].tolist()]
        pos_ts = pos_ts[ids]
        has_position = pos_ts != NO_TS
        position_ts = iso_many(np.where(has_position, pos_ts, 0))
        extra = [rule.view(ids) for rule in self.rules]
        extra = [(name, values) for columns in extra for name, values in columns.items()]
        views = {}
        for j, (s, lat, lon, at, has, temp) in enumerate(zip(
                ids.tolist(), lats[ids].tolist(), lons[ids].tolist(), position_ts,
                has_position.tolist(), temps[ids].tolist(), strict=True)):
            info, name = st.info[s], st.shipments.names[s]
            view = views[name] = {
                "status": status[j],
                "last_position": {"lat": lat, "lon": lon, "ts": at} if has else None,
                "last_temp_c": None if temp != temp else temp,  # NaN: no reading yet
                "profile": info.profile,
                "open_alerts": open_alerts.get(name, []),
                "eta": None if info.eta is None else iso(info.eta),
            }
            for column, values in extra:
                view[column] = values[j]
        return views

    def shipments(self, names: Iterable[str] | None = None) -> dict[str, dict]:
        """Live state of the named shipments (all when None; unknown names are left out)."""
        if names is None:
            return self.shipment_views(range(len(self.state.shipments)))
        index = self.state.shipments.index
        return self.shipment_views(index[n] for n in names if n in index)

    def dump_state(self) -> dict:
        """Everything the engine remembers between batches, as plain data and NumPy arrays
        (configuration excluded: `load_state` goes into an engine built from it)."""
        return {"state": self.state.dump_state(), "book": self.book.dump_state(),
                "ingest": self.ingest.dump_state(), "reorder": self.reorder.dump_state(),
                "business": [[seq, msgspec.to_builtins(event)]
                             for seq, event in self.business.items()],
                "counters": self.counters, "idle_time": self._idle_time,
                "arrival": list(self._arrival),
                "rules": {rule.name: rule.dump_state() for rule in self.rules}}

    def load_state(self, data: dict) -> None:
        """Continue from `dump_state` of an engine of the same configuration. A rule without
        state in `data` (one added to the configuration since) starts empty."""
        self.state.load_state(data["state"])
        self.book.load_state(data["book"])
        self.ingest.load_state(data["ingest"])
        self.reorder.load_state(data["reorder"])
        self.business = {seq: msgspec.convert(event, Scan | Order)
                         for seq, event in data["business"]}
        self._counters = {name: int(data["counters"].get(name, 0)) for name in self._counters}
        self._idle_time = data["idle_time"]
        self._arrival = tuple(data["arrival"])
        rules = data["rules"]
        for rule in self.rules:
            if rule.name in rules:
                rule.load_state(rules[rule.name])

    def snapshot(self) -> dict:
        """The contract's STATE.json: every shipment's settled state and the counters."""
        shipments = self.shipment_views(range(len(self.state.shipments)), settled=True)
        return {"shipments": shipments, "counters": self.counters}
