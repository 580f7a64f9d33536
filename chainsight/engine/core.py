"""The processing core: batches of raw events and user commands in; alert transitions, dead
letters and state changes out, through one narrow API (`Engine`).

It knows nothing of files, Kafka, Redis or HTTP; the embedded runtime, `replay` and the Kafka
workers all drive this one class. Events are decoded, deduplicated and held per key for the
allowed lateness (`ingest`), then run in event-time order through the settled pipeline. The
live view of each shipment is updated as events arrive. In live mode a provisional pipeline
runs every event at once as well, so alerts are published the moment they are true and settled
later (`engine.live`).
"""

from __future__ import annotations

import bisect
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
    UnknownAlert,
)
from chainsight.contract.events import GPS, SCAN, SENSOR, EventDecoder, Order, Scan
from chainsight.contract.times import iso_many, now_ms
from chainsight.engine.live import LiveStream, group_of
from chainsight.engine.pipeline import STATUS_OF_SCAN, STATUSES, Pipeline, Transitions
from chainsight.engine.state import NO_TS, Columns, ShipmentInfo, State
from chainsight.eta.model import EtaModel
from chainsight.eta.published import Etas
from chainsight.geofence import FenceError, FenceSet
from chainsight.ingest.arrival import ArrivalDelays
from chainsight.ingest.columnar import Extracted
from chainsight.ingest.dedup import Decoded, Ingest
from chainsight.ingest.idset import IdWindow
from chainsight.ingest.reorder import Reorder
from chainsight.ingest.rows import Rows
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import Rule
from chainsight.trace.chain import GENESIS
from chainsight.trace.record import Recorder, Written

ETA_COUNTS = ("eta_predictions", "eta_deliveries", "eta_learned")
STATUS_CODE = {name: code for code, name in enumerate(STATUSES)}
SCAN_STATUS_CODE = {step: STATUS_CODE[name] for step, name in STATUS_OF_SCAN.items()}
ORDER_FACTS = ("sscc", "gtin", "mode", "weight_kg", "origin", "destination", "profile",
               "promised_by", "status")


@dataclass
class Output:
    """What one call into the engine produced."""

    alerts: list[dict] = field(default_factory=list)  # the alert stream to publish
    settled: list[dict] = field(default_factory=list)  # the settled stream (ALERTS.jsonl)
    confirmed: list[dict] = field(default_factory=list)  # provisional records now settled
    notifications: list[dict] = field(default_factory=list)  # escalations, severity raises
    audit: list[dict] = field(default_factory=list)  # audit-trail entries appended, with hash
    dead_letters: list[dict] = field(default_factory=list)
    late: Rows | None = None  # accepted but too late for rules: history only
    changed: set[int] = field(default_factory=set)  # shipments whose live state changed
    record: list[Written] = field(default_factory=list)  # entries of the shipments' records
    etas: list[Etas] = field(default_factory=list)  # ETAs published (ETA.jsonl), in batches

    def eta_records(self) -> list[dict]:
        """The ETAs published, as ETA.jsonl's objects."""
        return [record for batch in self.etas for record in batch.records()]

    def extend(self, other: Output) -> Output:
        """This output followed by `other` (what two engine calls produced together)."""
        self.alerts += other.alerts
        self.settled += other.settled
        self.confirmed += other.confirmed
        self.notifications += other.notifications
        self.audit += other.audit
        self.dead_letters += other.dead_letters
        self.changed |= other.changed
        self.record += other.record
        self.etas += other.etas
        return self


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


def _shipments_of(rows: Rows, state: State) -> np.ndarray:
    """Each row's shipment: its own, else (a device event without one) its device's link in
    `state`; -1 for none."""
    ship = rows.shipment.copy()
    unlinked = (rows.kind < SCAN) & (ship < 0)
    ship[unlinked] = state.device.shipment[rows.device[unlinked]]
    return ship


class Engine:
    """Stateful processing core: call `process` with raw lines (arrival order), `advance` on a
    live runtime's clock, `apply` for users' commands, and `flush` at the end of a stream.

    `live=True` (live runtimes) adds the provisional pipeline: `Output.alerts` is then the live
    stream (provisional transitions, withdrawals, settled ones), `Output.settled` the settled
    stream; without it both are the settled stream.
    """

    def __init__(self, settings: Settings | None = None,
                 profiles: dict[str, Profile] | None = None,
                 rules: list[Rule] | None = None, fences: FenceSet | None = None,
                 live: bool = False, record: bool | None = None) -> None:
        self.settings = settings or load_settings()
        self.profiles = profiles if profiles is not None else load_profiles()
        if live and rules is not None:
            raise ValueError("a live engine builds its own rules (two sets of them)")
        # one ETA model for both pipelines: the settled one learns, both predict
        self.eta_model = EtaModel(self.settings.eta_shards) \
            if self.settings.eta and rules is None else None
        self.settled = Pipeline(self.settings, self.profiles, State(), rules, fences,
                                eta_model=self.eta_model)
        self.ingest = Ingest(self.state, EventDecoder.for_settings(self.settings),
                             IdWindow(int(self.settings.dedup_window_min * 60_000)))
        self.reorder = Reorder(self.settings.allowed_lateness_ms)
        self._idle_time = NO_TS  # stream time an idle stream has moved on to (`advance`)
        self._arrival = (0, NO_TS)  # wall clock and stream time at the latest arrival
        self._ended = False  # flushed (a recording's end), nothing arrived since
        self.business: dict[int, Scan | Order] = {}  # seq -> scan/order held for reordering
        self._counters = {"events": 0, "rejected": 0, "duplicates": 0, "late_dropped": 0}
        self.arrival_delays = ArrivalDelays() if live else None  # the provisional rules'
        self.provisional = Pipeline(self.settings, self.profiles,
                                    State.sharing_ids(self.state), fences=fences,
                                    audited=False, eta_model=self.eta_model,
                                    arrival=self.arrival_delays) if live else None
        self.live = LiveStream() if live else None
        self._seen = Columns(ts=(np.int64, NO_TS))  # per shipment: newest ts run provisionally
        # users' commands applied provisionally and still to settle: (at, command, group)
        self._commands: list[tuple[int, Command, str]] = []
        # the shipments' tamper-evident records: kept by live runtimes unless told otherwise
        block_min = self.settings.record_block_min
        self.recorder = Recorder(self.settings.record_block_rows,
                                 None if block_min is None else int(block_min * 60_000)) \
            if (live if record is None else record) else None
        self._now = 0  # the runtime's clock at the latest call: when record entries are made

    # --- the settled pipeline's parts (what tests and tools inspect) ----------------------

    @property
    def state(self) -> State:
        return self.settled.state

    @property
    def book(self) -> AlertBook:
        return self.settled.book

    @property
    def rules(self) -> list[Rule]:
        return self.settled.rules

    @property
    def advisor(self) -> ColdStoreAdvisor:
        return self.settled.advisor

    # --- input ----------------------------------------------------------------------------

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
        before = self.stream_time
        late = self.reorder.admit(decoded.rows)
        if self.arrival_delays is not None:
            self.arrival_delays.admit(decoded.rows, len(self.state.devices),
                                      self.reorder.newest, before, self.stream_time)
        if len(late):
            for seq in late.seq[late.kind >= SCAN].tolist():
                del self.business[seq]
        if len(decoded.rows):
            self._arrival, self._ended = (now, self.reorder.stream_time), False
        counters["late_dropped"] = self.reorder.late_dropped
        self._now = now
        changed, shipment_of_row = self._live_view(decoded)
        out = Output(dead_letters=decoded.dead_letters, late=late, changed=changed)
        if self.recorder is not None:
            self.recorder.add_events(decoded.rows, shipment_of_row, decoded.business,
                                     decoded.business_json, self.state, self.stream_time)
        if self.provisional is not None:  # first: what it publishes, the settling confirms
            on_time = decoded.rows
            if len(late):
                on_time = on_time.take(np.flatnonzero(~np.isin(on_time.seq, late.seq)))
            self._run_provisional(on_time, decoded.business, out)
        self._settle(self.reorder.release(), out)
        self._record(out)
        return out

    def _record(self, out: Output, everything: bool = False) -> None:
        """The records' blocks now due (all waiting, at the end of a stream)."""
        if self.recorder is not None:
            out.record += self.recorder.blocks(self.state, self._now, self.stream_time,
                                               everything)

    def _live_view(self, decoded: Decoded) -> tuple[set[int], np.ndarray]:
        """Update the live view with every accepted event at once, in arrival order, whatever
        the lateness; returns the shipments it changed and each row's shipment (-1: none)."""
        rows, st = decoded.rows, self.state
        if not len(rows):
            return set(), np.empty(0, np.int64)
        status = np.full(len(rows), -1, np.int8)
        links: list[tuple[int, int, int]] = []  # row, device, shipment of orders' device_ids
        business = np.flatnonzero(rows.kind >= SCAN)
        events = [decoded.business[seq] for seq in rows.seq[business].tolist()]
        status[business] = [STATUS_CODE[e.status] if type(e) is Order
                            else SCAN_STATUS_CODE.get(e.step, -1) for e in events]
        for i, s, event in zip(business.tolist(), rows.shipment[business].tolist(), events,
                               strict=True):
            if type(event) is Order and event.device_ids:
                links += [(i, st.device_id(d), s) for d in event.device_ids]
        st.grow()
        link_row, link_device, link_ship = np.array(links, np.int64).reshape(-1, 3).T
        sh = st.shipment
        resolved = live_kernel(rows.kind, rows.device, rows.shipment, rows.ts, rows.lat,
                               rows.lon, rows.temp_c, status, link_row, link_device, link_ship,
                               st.device.live_shipment, sh.live_lat, sh.live_lon,
                               sh.live_pos_ts, sh.live_temp_c, sh.live_temp_ts, sh.live_status,
                               sh.live_status_ts, sh.last_seen)
        return set(np.flatnonzero(np.bincount(resolved[resolved >= 0])).tolist()), resolved

    def advance(self, now: int) -> Output:
        """A live runtime's tick (`now`: its clock, as given to `process`): an idle stream's
        time moves on by the time elapsed since its latest arrival, never jumping to the
        calendar, so time-driven rules still fire when devices fall silent, and a recording
        replayed fast gives the same results as `replay`."""
        out = Output()
        self._now = now
        if self._ended:  # a recording's end is the end of its time
            return out
        wall, stream = self._arrival
        self._idle_time = max(self._idle_time, stream + max(0, now - wall))
        if self.provisional is not None:
            self._run_provisional(Rows.empty(), {}, out)
        self._settle(self.reorder.release(upto=self.stream_time), out,
                     clock=self.stream_time - self.settings.allowed_lateness_ms)
        self._record(out)
        return out

    def flush(self, clock: int | None = None) -> Output:
        """End of stream: process everything still held for reordering; then event time is
        `clock` when given (the whole stream's time, for an engine that saw part of it).
        Everything published is settled then, and event time stays until events arrive."""
        self._ended = True
        if clock is not None:
            self._idle_time = max(self._idle_time, clock)
        out = Output()
        self._settle(self.reorder.release(everything=True), out, clock=clock, final=True)
        self._record(out, everything=True)
        return out

    def apply(self, command: Command) -> Output:
        """Carry out a user command; returns the transitions it made. CommandRefused (one line,
        nothing changed) for a command the engine cannot carry out, UnknownAlert (a subclass)
        for an alert it does not know. Callers on other threads hold the runtime's lock."""
        out = Output()
        if type(command) is ReplaceFences:
            try:
                fences = FenceSet.from_geojson(command.geojson)
            except FenceError as exc:
                raise CommandRefused(str(exc)) from None
            self.replace_fences(fences)
            return out
        self._now = command.recorded_at or self._now
        if self.provisional is None or self._book_of(command.alert_id) is self.settled:
            self._publish_settled(self._command(self.settled, command), out)
            return out
        command = msgspec.structs.replace(command, at=self._action_time(self.provisional,
                                                                        command))
        at = command.at
        done = self._command(self.provisional, command)
        group = group_of(done.alerts[0][1])
        bisect.insort(self._commands, (at, command, group), key=lambda c: c[0])
        self._publish_provisional(done, out)
        return out

    def replace_fences(self, fences: FenceSet) -> None:
        """Swap the geofences while running; state of unchanged fences carries over."""
        for pipeline in self._pipelines():
            pipeline.replace_fences(fences)

    # --- the pipelines --------------------------------------------------------------------

    def _pipelines(self) -> list[Pipeline]:
        return [self.settled] if self.provisional is None else [self.settled, self.provisional]

    @staticmethod
    def _action_time(pipeline: Pipeline, command: Command) -> int:
        """When a user's action happens: its `at`, by default the pipeline's clock but not
        before the alert's last transition (which one device ahead of the stream's time may
        have made)."""
        if command.at is not None:
            return command.at
        alert = pipeline.book.alerts.get(command.alert_id)
        return max(pipeline.state.clock, NO_TS if alert is None else alert.last_at)

    @classmethod
    def _command(cls, pipeline: Pipeline, command: Command,
                 out: Transitions | None = None) -> Transitions:
        """A user's acknowledge or resolve, carried out by one pipeline (into `out`)."""
        at = cls._action_time(pipeline, command)
        if type(command) is Acknowledge:
            pipeline.book.acknowledge(command.alert_id, command.user, at, command.comment,
                                      command.recorded_at)
        elif type(command) is Resolve:
            pipeline.book.resolve_manually(command.alert_id, command.user, command.comment,
                                           at, command.recorded_at)
        else:
            raise CommandRefused(f"unknown command {type(command).__name__}")
        return pipeline.collect(Transitions() if out is None else out)

    def _settle(self, rows: Rows, out: Output, clock: int | None = None,
                final: bool = False) -> None:
        """Run released rows through the settled pipeline in event-time order, users'
        commands at their times among them, then let event time reach `clock` (default: the
        rows' newest time, but not beyond the stream's)."""
        done, pipeline = Transitions(), self.settled
        business = self.business.pop
        start = 0
        threshold = self.stream_time - self.settings.allowed_lateness_ms
        while self._commands and (final or self._commands[0][0] < threshold):
            at, command, _ = self._commands.pop(0)
            stop = int(np.searchsorted(rows.ts, at, side="right"))
            pipeline.run(rows.slice(start, stop), business, pipeline.state.clock, done)
            start = stop
            try:
                self._command(pipeline, command, done)
            except UnknownAlert:
                pipeline.book.not_applied(command, at, "the alert was withdrawn: events that "
                                          "arrived late showed its condition did not hold")
            except CommandRefused as refused:  # resolved before the action
                pipeline.book.not_applied(command, at, str(refused))
        if len(rows):
            newest = min(int(rows.ts[-1]), self.stream_time)  # not a wrong clock's time
            clock = newest if clock is None else max(clock, newest)
        pipeline.run(rows.slice(start), business, pipeline.state.clock if clock is None
                     else clock, done)
        self.ingest.dedup.expire(pipeline.state.clock)
        self._publish_settled(done, out, final)

    def _publish_settled(self, done: Transitions, out: Output, final: bool = False) -> None:
        records = [record for _, record in done.alerts]
        out.settled += records
        if self.recorder is not None:
            self.recorder.add_alerts(records, self.state, self.stream_time)
        out.audit += done.audit
        out.etas += done.etas
        out.changed |= done.changed
        if self.live is None:
            out.alerts += records
            out.notifications += done.notifications
            return
        published: list[dict] = []
        self.live.settle(done.alerts, self.settled.state.clock, published, out.confirmed, final)
        self._publish_records(published, out)
        self.live.notify(done.notifications, out.notifications)

    def _publish_provisional(self, done: Transitions, out: Output) -> None:
        self.live.publish(done.alerts, out.alerts)
        self.live.notify(done.notifications, out.notifications)
        out.changed |= done.changed

    def _publish_records(self, records: list[dict], out: Output) -> None:
        """Publish settled-only transitions and withdrawals (with notices of withdrawals)."""
        out.alerts += records
        self.live.withdrawn_notices([r for r in records if r["state"] == "retracted"],
                                    out.notifications)
        index = self.state.shipments.index
        out.changed.update(index[r["shipment_id"]] for r in records
                           if r["shipment_id"] in index)

    def _run_provisional(self, rows: Rows, business: dict[int, Scan | Order],
                         out: Output) -> None:
        """Run rows that just arrived (on time) through the provisional pipeline. A shipment
        that got an event older than what it has run already is re-evaluated: its state is
        reset to the settled pipeline's and its held events are run again."""
        pipeline, st = self.provisional, self.provisional.state
        st.grow()
        self._seen.ensure(len(st.shipments))
        rows = rows.in_time_order()
        ship = _shipments_of(rows, st)
        devices = rows.kind < SCAN
        linked = ship >= 0
        first = np.full(len(st.shipments), 2**62, np.int64)
        np.minimum.at(first, ship[linked], rows.ts[linked])
        dirty = np.flatnonzero(first < self._seen.ts[:len(first)])
        clean = ~np.isin(ship, dirty)
        done = Transitions()  # event time moves on once all rows are in, dirty ones too
        pipeline.run(rows.take(np.flatnonzero(clean)), business.__getitem__, st.clock, done)
        # again: the rows of devices an order in these rows linked ran for its shipment too
        ran = _shipments_of(rows, st)
        ran_linked = clean & (ran >= 0)
        np.maximum.at(self._seen.ts, ran[ran_linked], rows.ts[ran_linked])
        self._publish_provisional(done, out)
        redone, groups = Transitions(), set()
        if len(dirty):
            groups = self._reevaluate(dirty, rows.device[np.isin(ship, dirty) & devices],
                                      redone)
        pipeline.tick(self.stream_time, redone)
        withdrawn: list[dict] = []
        self.live.rebuilt(groups, redone.alerts, self.stream_time, withdrawn)
        self._publish_records(withdrawn, out)
        self.live.notify(redone.notifications, out.notifications)
        out.changed |= redone.changed

    def _reevaluate(self, shipments: np.ndarray, devices: np.ndarray,
                    done: Transitions) -> set[str]:
        """Reset the provisional state of these shipments (and their devices) to the settled
        state and run their held events and users' commands again; returns their groups."""
        pipeline, settled = self.provisional, self.settled
        settled.state.grow()
        n = len(self.state.devices)
        linked = np.isin(pipeline.state.device.shipment[:n], shipments) | np.isin(
            settled.state.device.shipment[:n], shipments)
        devices = np.union1d(devices, np.flatnonzero(linked)).astype(np.int64)
        pipeline.copy_entities(settled, shipments, devices)
        held = self.reorder.pending(np.r_[2 * devices, 2 * shipments + 1])
        pipeline.run(held, self.business.__getitem__, pipeline.state.clock, done)
        names = self.state.shipments.names
        groups = {names[s] for s in shipments.tolist()}
        for _, command, group in self._commands:  # users' commands on them, again
            if group in groups:
                try:
                    self._command(pipeline, command, done)
                except CommandRefused:
                    pass
        seen = np.full(len(self._seen), NO_TS, np.int64)
        held_ship = _shipments_of(held, pipeline.state)  # order-linked devices' rows included
        np.maximum.at(seen, held_ship[held_ship >= 0], held.ts[held_ship >= 0])
        self._seen.ts[shipments] = np.maximum(seen[shipments], settled.state.clock)
        return groups

    # --- queries (read-only; callers on other threads hold the runtime's lock) --------------

    @property
    def ended(self) -> bool:
        """Whether the stream was flushed (a recording ended) and nothing arrived since: its
        time does not move on while idle."""
        return self._ended

    @property
    def decoder(self) -> EventDecoder:
        """The decoder `process` uses (replay runs it in other processes)."""
        return self.ingest.decoder

    @property
    def counters(self) -> dict[str, int]:
        """The contract's counters: events, rejected, duplicates, late_dropped."""
        return dict(self._counters)

    def _current(self) -> Pipeline:
        """The pipeline whose alerts users see: the provisional one when live."""
        return self.settled if self.provisional is None else self.provisional

    def metrics(self) -> dict[str, float]:
        """Counters, open alerts by kind (`open_alerts.KIND`), the rules' own counts (the ETA
        rule's: `eta_predictions`, `eta_deliveries` and `eta_accuracy.*`) and, when live,
        withdrawn provisional transitions by kind (`retracted.KIND[.RULE]`)."""
        out = dict(self._counters)
        out["shipments"] = len(self.state.shipments)
        for alert in self._current().book.open_alerts.values():
            name = f"open_alerts.{alert.kind}"
            out[name] = out.get(name, 0) + 1
        for rule in self.rules:
            out.update(rule.metrics())
        if self.live is not None:
            out.update({f"retracted.{kind}": n for kind, n in self.live.retracted.items()})
        return out

    def eta_totals(self) -> dict | None:
        """What several engines' ETA metrics add up from (None when ETAs are off): the
        counts in `metrics` and the accuracy's sums, as plain lists."""
        if self.eta_model is None:
            return None
        metrics = {name: n for rule in self.rules for name, n in rule.metrics().items()}
        sums = self.eta_model.accuracy.dump_state()
        return {**{name: metrics.get(name, 0) for name in ETA_COUNTS},
                "accuracy": {name: np.asarray(v).tolist() for name, v in sums.items()}}

    def alerts(self, state: str | None = None, kind: str | None = None,
               shipment_id: str | None = None, severity: str | None = None) -> list[dict]:
        """The current record of every alert remembered, newest first, filtered."""
        current = self._current().book.alerts
        settled_only = [a for aid, a in self.book.alerts.items() if aid not in current]
        found = [a for a in [*current.values(), *settled_only]
                 if (state is None or a.state == state) and (kind is None or a.kind == kind)
                 and (shipment_id is None or a.shipment_id == shipment_id)
                 and (severity is None or a.severity == severity)]
        found.sort(key=lambda a: (a.last_at, a.alert_id), reverse=True)
        return [self._shown(a.current) for a in found]

    def alert(self, alert_id: str) -> dict | None:
        """The current record of one alert, None when unknown."""
        pipeline = self._book_of(alert_id)
        return None if pipeline is None else self._shown(pipeline.book.alerts[alert_id].current)

    def _book_of(self, alert_id: str) -> Pipeline | None:
        """The pipeline whose book has the alert's current record: the provisional one's when
        it knows it, else the settled one's (a transition only the in-order evaluation found);
        None when neither knows it."""
        for pipeline in self._pipelines()[::-1]:
            if alert_id in pipeline.book.alerts:
                return pipeline
        return None

    def _shown(self, record: dict) -> dict:
        """A record as users see it: when live, whether it is still provisional."""
        return record if self.live is None else {
            **record, "provisional": self.live.is_unsettled(record)}

    def audit_trail(self, alert_id: str) -> list[dict]:
        """Every audit entry of one alert, oldest first: the settled ones (hash-chained), then,
        when live, its transitions published and not yet settled, users' actions among them
        (`"provisional": true`, no hash: they join the chain when settled)."""
        settled = self.book.audit.history(alert_id)
        record = self.alert(alert_id) if self.live is not None else None
        if record is None:
            return settled
        pending = sorted((p for p in self.live.unsettled.get(group_of(record), {}).values()
                          if p.record["alert_id"] == alert_id), key=lambda p: p.at)
        return settled + [{**p.record, "provisional": True} for p in pending]

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
        s = -1 if d is None or d >= len(st.device.live_shipment) \
            else int(st.device.live_shipment[d])
        return st.shipments.names[s] if s >= 0 else None

    def customer_of(self, shipment_id: str) -> str | None:
        """The customer of a shipment (its order's `customer_id`, as the events seen so far
        show it); None when unknown or not given."""
        s = self.state.shipments.index.get(shipment_id)
        for pipeline in () if s is None else (self._current(), self.settled):
            info = pipeline.state.info
            if s < len(info) and info[s].customer_id is not None:
                return info[s].customer_id
        return None

    def order_facts(self, shipment_id: str) -> dict | None:
        """What a shipment's order events said, for traceability (`sscc`, `gtin`, `lot`,
        `mode`, `weight_kg`, `origin`, `destination` as (lat, lon), `profile`, `promised_by`),
        from the newest pipeline that has seen its order; None for an unknown shipment."""
        s = self.state.shipments.index.get(shipment_id)
        if s is None:
            return None
        info = ShipmentInfo()
        for pipeline in (self.settled, self._current()):
            known = pipeline.state.info
            if s < len(known) and known[s].order_id is not None:
                info = known[s]
        facts = {name: getattr(info, name) for name in ORDER_FACTS}
        facts["lot"] = None if info.lot is None else msgspec.to_builtins(info.lot)
        return facts

    def shipment_of_sscc(self, sscc: str) -> str | None:
        """The shipment whose order carries this SSCC (the newest such), None when none."""
        names = self.state.shipments.names
        for pipeline in (self._current(), self.settled):
            for s in range(len(pipeline.state.info) - 1, -1, -1):
                if pipeline.state.info[s].sscc == sscc:
                    return names[s]
        return None

    @property
    def recording(self) -> bool:
        """Whether it keeps the shipments' tamper-evident records."""
        return self.recorder is not None

    def record_head(self, shipment_id: str) -> tuple[int, str]:
        """(entries, hash of the newest entry) of a shipment's record; (0, GENESIS) when none
        is kept."""
        s = self.state.shipments.index.get(shipment_id)
        if self.recorder is None or s is None:
            return 0, GENESIS
        return self.recorder.head(s)

    def record_heads(self) -> list[tuple[str, int, str]]:
        """(shipment id, entries, head) of every record kept, for anchoring."""
        if self.recorder is None:
            return []
        names = self.state.shipments.names
        return [(names[s], n, head) for s, (n, head)
                in enumerate(zip(self.recorder.length, self.recorder.heads, strict=True)) if n]

    def last_seen(self, shipment_id: str) -> int | None:
        """The newest event time seen for a shipment (epoch ms), None when none yet."""
        s = self.state.shipments.index.get(shipment_id)
        seen = self.state.shipment.last_seen
        return None if s is None or s >= len(seen) or seen[s] == NO_TS else int(seen[s])

    def shipment_views(self, ids: Iterable[int], settled: bool = False) -> dict[str, dict]:
        """The state of the shipments `ids` (dense ids) as in STATE.json, by shipment id: as
        the events seen so far show it (live: the newest event time wins), or as the in-order
        processing has settled it."""
        ids = np.fromiter(ids, np.int64)
        st, sh = self.state, self.state.shipment
        pipeline = self.settled if settled else self._current()
        open_alerts: dict[str | None, list[str]] = {}
        for alert in pipeline.book.open_alerts.values():
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
        extra = [rule.view(ids) for rule in pipeline.rules]
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
                "eta": None,  # the ETA rule's view gives it when ETAs are on
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

    def snapshot(self) -> dict:
        """The contract's STATE.json: every shipment's settled state and the counters."""
        shipments = self.shipment_views(range(len(self.state.shipments)), settled=True)
        out = {"shipments": shipments, "counters": self.counters}
        if self.eta_model is not None:
            out["eta_accuracy"] = self.eta_model.accuracy.summary()
        return out

    # --- durable state ----------------------------------------------------------------------

    def dump_state(self) -> dict:
        """Everything the engine remembers between batches, as plain data and NumPy arrays
        (configuration excluded: `load_state` goes into an engine built from it)."""
        data = {"state": self.state.dump_state(), **self.settled.dump_state(),
                "ingest": self.ingest.dump_state(), "reorder": self.reorder.dump_state(),
                "business": [[seq, msgspec.to_builtins(event)]
                             for seq, event in self.business.items()],
                "counters": self.counters, "idle_time": self._idle_time,
                "arrival": list(self._arrival), "ended": self._ended, "now": self._now}
        if self.recorder is not None:
            data["record"] = self.recorder.dump_state()
        if self.eta_model is not None:
            data["eta_model"] = self.eta_model.dump_state()
        if self.provisional is not None:
            data["provisional"] = {"state": self.provisional.state.dump_state(),
                                   **self.provisional.dump_state(),
                                   "live": self.live.dump_state(),
                                   "seen": self._seen.dump_state(),
                                   "arrival_delays": self.arrival_delays.dump_state(),
                                   "commands": [[at, msgspec.to_builtins(command), group]
                                                for at, command, group in self._commands]}
        return data

    def load_state(self, data: dict) -> None:
        """Continue from `dump_state` of an engine of the same configuration. A rule without
        state in `data` (one added to the configuration since) starts empty."""
        self.state.load_state(data["state"])
        self.settled.load_state(data)
        self.ingest.load_state(data["ingest"])
        self.reorder.load_state(data["reorder"])
        self.business = {seq: msgspec.convert(event, Scan | Order)
                         for seq, event in data["business"]}
        self._counters = {name: int(data["counters"].get(name, 0)) for name in self._counters}
        self._idle_time = data["idle_time"]
        self._arrival = tuple(data["arrival"])
        self._ended = data["ended"]
        self._now = data.get("now", 0)
        if self.recorder is not None and "record" in data:
            self.recorder.load_state(data["record"])
        if self.eta_model is not None and "eta_model" in data:
            self.eta_model.load_state(data["eta_model"])
        if self.provisional is not None and "provisional" in data:
            live = data["provisional"]
            self.provisional.state.load_state(live["state"])
            self.provisional.load_state(live)
            self.live.load_state(live["live"])
            self._seen.load_state(live["seen"])
            self.arrival_delays.load_state(live.get("arrival_delays", {}))  # none before them
            self._commands = [(at, msgspec.convert(command, Command), group)
                              for at, command, group in live["commands"]]

    def export_eta_model(self) -> bytes:
        """The ETA model as a JSON document (`EtaModel.export`); ValueError when ETAs are
        off."""
        if self.eta_model is None:
            raise ValueError("ETAs are off (setting eta = false): there is no model to export")
        return self.eta_model.export()

    def import_eta_model(self, data: bytes) -> None:
        """Continue from an exported ETA model (the accuracy so far comes with it);
        ValueError (one line) for a file that is not one, or when ETAs are off."""
        if self.eta_model is None:
            raise ValueError("ETAs are off (setting eta = false): cannot import a model")
        self.eta_model.load_state(EtaModel.import_(data).dump_state())
