"""ETAs for shipments in transit with a known destination, and `eta_late`.

The trips' features are updated from every GPS fix (`eta.features`); a prediction is due at a
trip's first position (or when it goes in transit), when a stop starts or ends, and at least
every `eta_interval_min` of event time (at exactly that time, from what was known then), so
the cost stays small at high event rates. Due predictions and the ends of trips (delivery,
cancellation) are collected while a batch runs and carried out when event time moves on
(`on_clock`), in event-time order and vectorised between deliveries, so the ETAs do not depend
on batching. `eta_late` opens when a published ETA is later than the order's `promised_by`
plus `eta_late_margin_min`, and resolves when an ETA is back within it or on delivery.

The model is shared by the engine's pipelines; only the settled pipeline's rule (`learns`)
learns from delivered trips (delayed labels), scores past ETAs and publishes them (ETA.jsonl).
"""

from __future__ import annotations

import math

import numpy as np

from chainsight.alerts.book import AlertBook
from chainsight.config import Profile, Settings
from chainsight.contract.events import Order, Scan
from chainsight.contract.times import iso
from chainsight.engine.state import NO_TS, State
from chainsight.eta.features import (
    SNAPSHOT,
    remaining_m,
    snapshot_now,
    track_trips,
    trip_columns,
)
from chainsight.eta.model import FEATURES, HOURS, EtaModel, shard_of
from chainsight.eta.published import Etas
from chainsight.eta.routes import RouteTable
from chainsight.eta.samples import MAX_AGE_MS, Samples, Taken
from chainsight.ingest.rows import Rows
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import Rule, minutes_ms

KIND = "eta_late"
LEARN_PER_TRIP = 4  # samples of a delivered trip learned from, spread over it (all are scored)
LEARN_DELAY_MS = 30 * 60_000  # a delivery is learned from this long after it (event time),
LEARN_EPOCH_MS = 15 * 60_000  # at the next of these steps (so few batches are cut by learning)
DELIVERED, ENDED = 0, 1  # how a trip ended
NEVER = 2**62


class EtaRule(Rule):
    name = "eta"  # names the rule's state in snapshots
    shipment_state = ("trip", "route_of", "where_of")

    def __init__(self, model: EtaModel, settings: Settings, advisor: ColdStoreAdvisor,
                 learns: bool = True) -> None:
        self.model = model
        self.learns = learns
        self.interval = minutes_ms(settings.eta_interval_min)
        self.margin = minutes_ms(settings.eta_late_margin_min)
        # later than any event the settled pipeline may still process before it
        self.delay = max(LEARN_DELAY_MS, 2 * settings.allowed_lateness_ms)
        self.lateness = settings.allowed_lateness_ms
        self.advisor = advisor  # its fences hold the corridors orders name
        self.trip = trip_columns()
        self.route_of: dict[int, str] = {}  # shipment -> the corridor its order names
        self.where_of: dict[int, list] = {}  # shipment -> where its last order said it goes
        self.samples = Samples(len(FEATURES))
        self.routes = RouteTable()
        self.published: list[Etas] = []  # ETAs not yet collected (the learner's only)
        self.changed: set[int] = set()  # shipments whose ETA changed, not yet collected
        self.predictions = 0
        # due predictions: shipments, times, SNAPSHOT rows, and promised_by as it was then
        self._due: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._ends: list[tuple[int, int, int]] = []  # (at, shipment, DELIVERED | ENDED)
        self._expired = NO_TS

    def dump_state(self) -> dict:
        return {**super().dump_state(), "samples": self.samples.dump_state(),
                "predictions": self.predictions}

    def load_state(self, data: dict) -> None:
        super().load_state(data)
        self.samples.load_state(data["samples"])
        self.predictions = int(data["predictions"])

    def collect(self) -> tuple[list[Etas], set[int]]:
        """The ETAs published (ETA.jsonl's) and the shipments whose ETA changed, since the
        last call."""
        out = self.published, self.changed
        self.published, self.changed = [], set()
        return out

    # --- events (what falls due is carried out in `on_clock`) --------------------------------

    def on_rows(self, rows: Rows, state: State, book: AlertBook) -> None:
        trip = self.trip
        trip.ensure(len(state.shipments))
        cap = max(256, len(rows) // 8)
        start = 0
        while start < len(rows):
            ship, at = np.empty(cap, np.int64), np.empty(cap, np.int64)
            why, snap = np.empty(cap, np.int8), np.empty((cap, len(SNAPSHOT)))
            n, start = track_trips(
                rows.kind, rows.shipment, rows.ts, rows.lat, rows.lon,
                state.shipment.in_transit, trip.dest_lat, trip.fix_ts, trip.fix_lat,
                trip.fix_lon, trip.speed, trip.stopped, trip.stop_start, trip.dwell_ms,
                trip.stops, trip.depart, trip.last_at, self.interval, start, ship, at, why,
                snap)
            if n:
                self._due.append((ship[:n], at[:n], snap[:n], trip.promised[ship[:n]]))

    def on_business(self, event: Scan | Order, shipment: int, state: State,
                    book: AlertBook) -> None:
        trip, s = self.trip, shipment
        if s >= len(trip.last_at):
            trip.ensure(len(state.shipments))
        if type(event) is Order:
            self._order(event, s)
            delivered = event.status == "delivered"
        else:
            delivered = event.step == "delivered"
        last = int(trip.last_at[s])
        if delivered or not state.shipment.in_transit[s]:
            if last != NO_TS or trip.late[s]:  # a trip to end
                if last != NO_TS:  # its ETAs due until then first, and no more
                    if last <= event.ts - 1 - self.interval:
                        self._fall_due(np.array([s]), event.ts - 1)
                    trip.last_at[s] = NO_TS
                self._ends.append((event.ts, s, DELIVERED if delivered else ENDED))
        elif last == NO_TS and not math.isnan(trip.dest_lat[s]):
            self._first_estimate(s, event.ts, state)

    def on_profile(self, shipment: int, profile: Profile | None, state: State) -> None:
        if shipment >= len(self.trip.last_at):
            self.trip.ensure(len(state.shipments))
        self.trip.temp_controlled[shipment] = profile is not None and profile.max_c <= 8.0

    def on_clock(self, clock: int, state: State, book: AlertBook) -> None:
        """Trips without a fix since their last ETA get theirs when due, up to the time every
        event before which has been processed (`clock` less the allowed lateness: a fix
        still held for reordering would otherwise be missed by the batching that holds it)."""
        trip, n = self.trip, len(state.shipments)
        trip.ensure(n)
        until = clock - self.lateness
        last = trip.last_at[:n]
        due = (last != NO_TS) & (last <= until - self.interval)
        due &= state.shipment.in_transit[:n] & ~np.isnan(trip.dest_lat[:n])
        if due.any():
            self._fall_due(np.flatnonzero(due), until)
        if self._due or self._ends:
            self._carry_out(state, book)
        if self.learns and clock - self._expired > 3_600_000:
            self.samples.expire(clock - MAX_AGE_MS)
            self._expired = clock

    def _fall_due(self, ships: np.ndarray, until: int) -> None:
        """The predictions of these trips due every interval up to `until`, from what was
        known of them then (their last fix)."""
        trip = self.trip
        k = np.maximum(0, (until - trip.last_at[ships]) // self.interval)
        rep = np.repeat(ships, k)
        step = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k) + 1
        at = trip.last_at[rep] + step * self.interval
        trip.last_at[ships] += k * self.interval
        self._due.append((rep, at, snapshot_now(trip, rep, at), trip.promised[rep]))

    def _first_estimate(self, s: int, at: int, state: State) -> None:
        """A shipment just went in transit: an ETA from its last known position (or its
        origin) before its first fix of the trip."""
        trip, sh = self.trip, state.shipment
        lat, lon = sh.last_lat[s], sh.last_lon[s]
        if math.isnan(lat):
            lat, lon = trip.origin_lat[s], trip.origin_lon[s]
        if not math.isnan(lat):
            trip.depart[s] = trip.last_at[s] = at
            self._due.append((np.array([s]), np.array([at]),
                              np.array([[at, lat, lon, np.nan, 0.0, 0.0, 0.0, 0.0, at]]),
                              trip.promised[[s]]))

    # --- carrying out, in event-time order -----------------------------------------------------

    def _learned_by(self, delivered: int) -> int:
        """From when ETAs are made with what a delivery at `delivered` teaches: the learning
        delay after it, at the next step of LEARN_EPOCH_MS."""
        return -(-delivered // LEARN_EPOCH_MS) * LEARN_EPOCH_MS + self.delay

    def _learned_by_time(self, at: int) -> int:
        """The latest delivery time whose lessons ETAs made at `at` use."""
        return (at - self.delay) // LEARN_EPOCH_MS * LEARN_EPOCH_MS

    def _carry_out(self, state: State, book: AlertBook) -> None:
        """The due predictions and ends of trips collected, in event-time order: predictions
        vectorised between the times deliveries are learned from. A trip's end comes after
        its ETAs, before the ETAs its delivery teaches."""
        if self._due:
            ship, at, snap, promised = (np.concatenate(parts)
                                        for parts in zip(*self._due, strict=True))
        else:
            ship = at = promised = np.zeros(0, np.int64)
            snap = np.zeros((0, len(SNAPSHOT)))
        ends = sorted(self._ends)
        self._due, self._ends = [], []
        order = np.argsort(at, kind="stable")
        ship, at, snap, promised = ship[order], at[order], snap[order], promised[order]
        km = self._remaining_km(ship, snap)
        trip = self.trip
        first = np.isnan(trip.start_km[ship])
        trip.start_km[ship[first][::-1]] = km[first][::-1]  # the trip's first sample wins
        i, e, n = 0, 0, len(at)
        while i < n:
            boundary = NEVER  # (a pipeline that does not learn predicts them all at once)
            if self.learns:
                done = e
                while e < len(ends) and self._learned_by(ends[e][0]) <= at[i]:
                    e += 1
                self._end_all(ends[done:e], state, book)
                if e < len(ends):
                    boundary = self._learned_by(ends[e][0])
                self.model.advance(self._learned_by_time(int(at[i])))
                job = self.model.next_job()
                if job is not None:
                    boundary = min(boundary, self._learned_by(job))
            stop = int(np.searchsorted(at, boundary))
            part = slice(i, stop)
            self._predict(ship[part], at[part], snap[part], km[part], promised[part], state,
                          book)
            i = stop
        self._end_all(ends[e:], state, book)

    def _remaining_km(self, ship: np.ndarray, snap: np.ndarray) -> np.ndarray:
        trip, r = self.trip, self.routes
        lines = r.lines([self.route_of.get(s) for s in ship.tolist()], self.advisor.fences)
        return remaining_m(snap[:, 1], snap[:, 2], trip.dest_lat[ship], trip.dest_lon[ship],
                           lines, r.lat, r.lon, r.cum, r.start, r.count) / 1000.0

    def _predict(self, ship: np.ndarray, at: np.ndarray, snap: np.ndarray, km: np.ndarray,
                 promised: np.ndarray, state: State, book: AlertBook) -> None:
        """ETAs of samples (shipment, time, SNAPSHOT row, km left, promised_by) in event-time
        order."""
        trip, model = self.trip, self.model
        fix_ts = snap[:, 0].astype(np.int64)
        shard = trip.shard[ship]
        x = model.features(shard, at, fix_ts, km, trip.lane[ship], snap[:, 3], snap[:, 4],
                           snap[:, 5], snap[:, 6], snap[:, 7], snap[:, 8].astype(np.int64),
                           trip.start_km[ship], promised,
                           trip.temp_controlled[ship].astype(np.float64))
        eta = np.maximum(at, fix_ts + np.rint(model.predict_minutes(x, shard) * 60_000)
                         .astype(np.int64))
        self.predictions += len(ship)
        _, last = np.unique(ship[::-1], return_index=True)
        last = len(ship) - 1 - last  # each shipment's newest sample
        trip.eta[ship[last]] = eta[last]
        for s, e in zip(ship[last].tolist(), eta[last].tolist(), strict=True):
            state.info[s].eta = e
            self.changed.add(s)
        if self.learns:
            baseline = np.maximum(at, fix_ts + np.rint(x[:, 0] * 60_000).astype(np.int64))
            self.samples.add(ship, at, fix_ts, x, baseline, eta)
            names = state.shipments.names
            self.published.append(Etas([names[s] for s in ship.tolist()], at, eta, km))
        self._late(ship, at, eta, promised, state, book)

    # --- eta_late ----------------------------------------------------------------------------

    def _late(self, ship: np.ndarray, at: np.ndarray, eta: np.ndarray, promised: np.ndarray,
              state: State, book: AlertBook) -> None:
        trip = self.trip
        late = (promised != NO_TS) & (eta > promised + self.margin)
        if not late.any() and not trip.late[ship].any():
            return
        order = np.argsort(ship, kind="stable")
        s_sorted, late_sorted = ship[order], late[order]
        before = np.empty_like(late_sorted)
        before[1:] = late_sorted[:-1]
        firsts = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
        before[firsts] = trip.late[s_sorted[firsts]]
        names = state.shipments.names
        for j in np.flatnonzero(late_sorted != before).tolist():
            k = int(order[j])
            s, when = int(ship[k]), int(at[k])
            eta_min = iso(int(eta[k]) // 60_000 * 60_000)
            if late[k]:
                trip.late[s] = True
                book.open(KIND, names[s], None, None, when, "warning",
                          {"promised_by": iso(int(promised[k])), "eta": eta_min,
                           "margin_min": self.margin / 60_000})
            else:
                self._resolve(s, when, state, book, {"eta": eta_min})

    def _resolve(self, s: int, at: int, state: State, book: AlertBook, details: dict) -> None:
        if self.trip.late[s]:
            self.trip.late[s] = False
            book.resolve(KIND, state.shipments.names[s], None, None, at, details)

    # --- business events -----------------------------------------------------------------------

    def _order(self, event: Order, s: int) -> None:
        trip = self.trip
        if event.promised_by is not None:
            trip.promised[s] = event.promised_by
        o, d = event.origin, event.destination
        where = [event.corridor_id, None if o is None else o.lat, None if o is None else o.lon,
                 None if d is None else d.lat, None if d is None else d.lon]
        if self.where_of.get(s) == where:  # as before (orders repeat the whole order)
            return
        self.where_of[s] = where
        if event.corridor_id is not None:
            self.route_of[s] = event.corridor_id
        if event.origin is not None:
            trip.origin_lat[s], trip.origin_lon[s] = event.origin.lat, event.origin.lon
        if event.destination is not None:
            trip.dest_lat[s], trip.dest_lon[s] = event.destination.lat, event.destination.lon
        if not math.isnan(trip.dest_lat[s]):
            trip.lane[s] = self.model.lanes.lane(self._lane_name(s))
            trip.shard[s] = shard_of(event.shipment_id, self.model.shards)

    def _lane_name(self, s: int) -> str:
        """The lane: the corridor the order names, else origin -> destination (~100 m)."""
        corridor = self.route_of.get(s)
        if corridor is not None:
            return corridor
        t = self.trip
        return (f"{t.origin_lat[s]:.3f},{t.origin_lon[s]:.3f}>"
                f"{t.dest_lat[s]:.3f},{t.dest_lon[s]:.3f}")

    def _end_all(self, ends: list[tuple[int, int, int]], state: State,
                 book: AlertBook) -> None:
        """Trips ended (in time order): delivered ones have their samples taken in one pass
        and their ETAs scored at once."""
        if not ends:
            return
        taken: dict[int, Taken] = {}
        if self.learns:
            delivered: dict[int, int] = {}  # shipment -> its (first) delivery
            for at, s, how in ends:
                if how == DELIVERED:
                    delivered.setdefault(s, at)
            taken = self.samples.take_many(list(delivered))
            scored = [(t.at, np.full(len(t.at), delivered[s]), t.eta, t.baseline_eta)
                      for s, t in taken.items()]
            if scored:
                self.model.accuracy.add(*(np.concatenate(c) for c in zip(*scored, strict=True)))
        for at, s, how in ends:
            self._end(at, s, how, state, book, taken.pop(s, None))

    def _end(self, at: int, s: int, how: int, state: State, book: AlertBook,
             taken: Taken | None) -> None:
        """A trip ended at `at`: `eta_late` resolves; delivered, its true arrival is known,
        so what its samples (`taken`) teach is queued for the model."""
        if how == ENDED:  # no longer in transit (cancelled, or back before shipping)
            self._resolve(s, at, state, book, {})
            if state.info[s].status == "cancelled":
                self._end_trip(s, state)
            return
        self._resolve(s, at, state, book, {"delivered_at": iso(at)})
        trip = self.trip
        if taken is not None:
            before = np.flatnonzero(taken.fix_ts <= at)
            if len(before):
                pick = before[np.unique(np.linspace(0, len(before) - 1, LEARN_PER_TRIP)
                                        .astype(np.int64))]
                self.model.queue(at, int(trip.shard[s]), taken.x[pick],
                                 (at - taken.fix_ts[pick]) / 60_000.0,
                                 (taken.at[pick] // 3_600_000) % HOURS, int(trip.lane[s]),
                                 float(np.nan_to_num(trip.start_km[s])),
                                 (at - int(trip.depart[s])) / 3.6e6)
        self._end_trip(s, state, samples_taken=True)

    def _end_trip(self, s: int, state: State, samples_taken: bool = False) -> None:
        """Forget the trip's progress (a later trip of the shipment starts afresh) and its
        samples (unless `samples_taken`)."""
        trip = self.trip
        for name in ("fix_ts", "stop_start", "depart", "last_at", "eta"):
            getattr(trip, name)[s] = NO_TS
        trip.fix_lat[s] = trip.fix_lon[s] = trip.speed[s] = trip.start_km[s] = np.nan
        trip.stopped[s], trip.dwell_ms[s], trip.stops[s] = False, 0, 0
        state.info[s].eta = None
        self.changed.add(s)
        if self.learns and not samples_taken:
            self.samples.take(s)

    def metrics(self) -> dict[str, float]:
        """Predictions made, deliveries learned from, and the accuracy of past ETAs."""
        if not self.learns:
            return {}
        model = self.model
        return {"eta_predictions": self.predictions, "eta_deliveries": model.deliveries,
                "eta_learned": model.learned, **model.accuracy.summary()}
