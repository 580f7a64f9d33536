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
from chainsight.config import Settings
from chainsight.contract.events import ORDER, Order, Point, Scan
from chainsight.contract.times import iso, iso_many
from chainsight.engine.state import NO_TS, State
from chainsight.eta.features import (
    SNAPSHOT,
    remaining_m,
    snapshot_now,
    track_trips,
    trip_columns,
)
from chainsight.eta.model import FEATURES, HOURS, EtaModel, shard_of
from chainsight.eta.published import Etas, ShipmentIds
from chainsight.eta.routes import RouteTable
from chainsight.eta.samples import MAX_AGE_MS, Samples
from chainsight.ingest.rows import Rows
from chainsight.rules.advisor import ColdStoreAdvisor
from chainsight.rules.base import Rule, minutes_ms

KIND = "eta_late"
LEARN_PER_TRIP = 4  # samples of a delivered trip learned from, spread over it (all are scored)
LEARN_DELAY_MS = 30 * 60_000  # a delivery is learned from this long after it (event time),
LEARN_EPOCH_MS = 15 * 60_000  # at the next of these steps (so few batches are cut by learning)
DELIVERED, ENDED = 0, 1  # how a trip ended
NEVER = 2**62
NOWHERE = Point(lat=math.nan, lon=math.nan)  # for an origin or destination not given


class EtaRule(Rule):
    name = "eta"  # names the rule's state in snapshots
    shipment_state = ("trip", "route_of")

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
        self.samples = Samples(len(FEATURES))
        self.routes = RouteTable()
        self.published: list[Etas] = []  # ETAs not yet collected (the learner's only)
        self._ids = ShipmentIds([])  # the shipment ids they name
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

    def on_business_rows(self, rows: Rows, events: list[Scan | Order], state: State,
                         book: AlertBook) -> None:
        """Scans and orders of distinct shipments, at once: orders set where trips go and
        their promised times; a trip that goes in transit gets its first ETA, and one that is
        delivered or no longer in transit ends (after the ETAs due until then)."""
        trip = self.trip
        trip.ensure(len(state.shipments))
        ships, ts = rows.shipment.astype(np.int64), rows.ts
        orders = np.flatnonzero(rows.kind == ORDER)
        if len(orders):
            self._orders([events[j] for j in orders.tolist()], ships[orders])
        last = trip.last_at[ships]
        ending = ~state.shipment.in_transit[ships]  # (a delivered one is not in transit)
        running = ending & (last != NO_TS)
        due = running & (last <= ts - 1 - self.interval)
        if due.any():  # a trip's ETAs due until it ends first, and no more
            self._fall_due(ships[due], ts[due] - 1)
        trip.last_at[ships[running]] = NO_TS
        end = np.flatnonzero(running | (ending & trip.late[ships]))
        self._ends += zip(ts[end].tolist(), ships[end].tolist(), [
            DELIVERED if (e.status if type(e) is Order else e.step) == "delivered" else ENDED
            for e in (events[j] for j in end.tolist())], strict=True)
        first = ~ending & (last == NO_TS) & ~np.isnan(trip.dest_lat[ships])
        if first.any():
            self._first_estimates(ships[first], ts[first], state)

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

    def _fall_due(self, ships: np.ndarray, until: int | np.ndarray) -> None:
        """The predictions of these trips due every interval up to `until` (one time, or
        each trip's), from what was known of them then (their last fix)."""
        trip = self.trip
        k = np.maximum(0, (until - trip.last_at[ships]) // self.interval)
        rep = np.repeat(ships, k)
        step = np.arange(len(rep)) - np.repeat(np.cumsum(k) - k, k) + 1
        at = trip.last_at[rep] + step * self.interval
        trip.last_at[ships] += k * self.interval
        self._due.append((rep, at, snapshot_now(trip, rep, at), trip.promised[rep]))

    def _first_estimates(self, ships: np.ndarray, at: np.ndarray, state: State) -> None:
        """Shipments just went in transit (at `at`): ETAs from their last known positions
        (or their origins) before their first fixes of the trips."""
        trip, sh = self.trip, state.shipment
        lat, lon = sh.last_lat[ships], sh.last_lon[ships]
        unknown = np.isnan(lat)
        lat[unknown], lon[unknown] = trip.origin_lat[ships[unknown]], trip.origin_lon[
            ships[unknown]]
        known = ~np.isnan(lat)
        ships, at, lat, lon = ships[known], at[known], lat[known], lon[known]
        if len(ships):
            trip.depart[ships] = trip.last_at[ships] = at
            zeros = np.zeros(len(ships))
            snap = np.column_stack([at, lat, lon, np.full(len(ships), np.nan), zeros, zeros,
                                    zeros, zeros, at]).astype(np.float64)
            self._due.append((ships, at, snap, trip.promised[ships]))

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
        lines = r.lines(trip.lane[ship], self.model.lanes.index, self.advisor.fences)
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
                           (state.shipment.max_c[ship] <= 8.0).astype(np.float64))
        eta = np.maximum(at, fix_ts + np.rint(model.predict_minutes(x, shard) * 60_000)
                         .astype(np.int64))
        self.predictions += len(ship)
        _, last = np.unique(ship[::-1], return_index=True)
        last = len(ship) - 1 - last  # each shipment's newest sample
        trip.eta[ship[last]] = eta[last]
        self.changed.update(ship[last].tolist())
        if self.learns:
            baseline = np.maximum(at, fix_ts + np.rint(x[:, 0] * 60_000).astype(np.int64))
            self.samples.add(ship, at, fix_ts, x, baseline, eta)
            if self._ids.names is not state.shipments.names:  # (a state loaded since)
                self._ids = ShipmentIds(state.shipments.names)
            self.published.append(Etas(self._ids, ship, at, eta, km))
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

    def _orders(self, orders: list[Order], ships: np.ndarray) -> None:
        """Orders of distinct shipments: their promised times, and where they go (the fields
        given); a trip's lane is named again when where it goes changed."""
        trip = self.trip
        promised = np.array([NO_TS if o.promised_by is None else o.promised_by
                             for o in orders], np.int64)
        given = promised != NO_TS
        trip.promised[ships[given]] = promised[given]
        moved = np.zeros(len(ships), bool)
        for lat, lon, points in (
                (trip.origin_lat, trip.origin_lon, [o.origin or NOWHERE for o in orders]),
                (trip.dest_lat, trip.dest_lon, [o.destination or NOWHERE for o in orders])):
            new_lat = np.array([p.lat for p in points])
            new_lon = np.array([p.lon for p in points])
            new = ~np.isnan(new_lat) & ((new_lat != lat[ships]) | (new_lon != lon[ships]))
            lat[ships[new]], lon[ships[new]] = new_lat[new], new_lon[new]
            moved |= new
        route_of = self.route_of
        rerouted = np.array([o.corridor_id is not None and route_of.get(s) != o.corridor_id
                             for s, o in zip(ships.tolist(), orders, strict=True)], bool)
        for j in np.flatnonzero(rerouted).tolist():
            route_of[int(ships[j])] = orders[j].corridor_id
        renamed = np.flatnonzero((moved | rerouted) & ~np.isnan(trip.dest_lat[ships]))
        if len(renamed):
            lanes = self.model.lanes
            trip.lane[ships[renamed]] = [lanes.lane(self._lane_name(s))
                                         for s in ships[renamed].tolist()]
            trip.shard[ships[renamed]] = [shard_of(orders[j].shipment_id, self.model.shards)
                                          for j in renamed.tolist()]

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
        """Trips ended (`ends` in time order), at once: `eta_late` resolves; a delivered
        trip's true arrival is known, so its samples are scored and what they teach is
        queued for the model; delivered and cancelled trips are forgotten."""
        if not ends:
            return
        trip = self.trip
        at, ships, how = (np.array(c, np.int64) for c in zip(*ends, strict=True))
        for j in np.flatnonzero(trip.late[ships]).tolist():
            self._resolve(int(ships[j]), int(at[j]), state, book,
                          {"delivered_at": iso(int(at[j]))} if how[j] == DELIVERED else {})
        delivered = how == DELIVERED
        ended = ships[~delivered]
        cancelled = ended[[state.info[s].status == "cancelled" for s in ended.tolist()]]
        if self.learns:
            first: dict[int, int] = {}  # shipment -> its (first) delivery
            for s, t in zip(ships[delivered].tolist(), at[delivered].tolist(), strict=True):
                first.setdefault(s, t)
            if first:
                self._learn_from(first)
            if len(cancelled):
                self.samples.take(cancelled.tolist())
        self._forget(np.r_[ships[delivered], cancelled])

    def _learn_from(self, first: dict[int, int]) -> None:
        """Trips delivered (shipment -> when, in delivery order): their samples are scored,
        and what LEARN_PER_TRIP of those before the delivery, spread evenly (fewer when
        fewer), teach is queued for the model."""
        taken = self.samples.take(list(first))
        if not len(taken.at):
            return
        ships = np.array(list(first), np.int64)
        by_ship = np.argsort(ships)
        arrived = np.array(list(first.values()), np.int64)[by_ship][
            np.searchsorted(ships[by_ship], taken.ship)]
        self.model.accuracy.add(taken.at, arrived, taken.eta, taken.baseline_eta)
        before = np.flatnonzero(taken.fix_ts <= arrived)
        learned, start, count = np.unique(taken.ship[before], return_index=True,
                                          return_counts=True)
        pos = start[:, None] + (np.arange(LEARN_PER_TRIP) * (count[:, None] - 1)
                                // (LEARN_PER_TRIP - 1))
        picked = np.ones(pos.shape, bool)
        picked[:, 1:] = pos[:, 1:] != pos[:, :-1]
        pick = before[pos[picked]]
        end = np.cumsum(picked.sum(axis=1)).tolist()
        x, at = taken.x[pick], taken.at[pick]
        minutes = (arrived[pick] - taken.fix_ts[pick]) / 60_000.0
        hour = (at // 3_600_000) % HOURS
        trip = self.trip
        k_of = {s: k for k, s in enumerate(learned.tolist())}
        km = np.nan_to_num(trip.start_km[learned]).tolist()
        for s, t in first.items():
            k = k_of.get(s)
            if k is not None:
                lo, hi = end[k - 1] if k else 0, end[k]
                self.model.queue(t, int(trip.shard[s]), x[lo:hi], minutes[lo:hi], hour[lo:hi],
                                 int(trip.lane[s]), km[k], (t - int(trip.depart[s])) / 3.6e6)

    def _forget(self, ships: np.ndarray) -> None:
        """Forget these trips' progress: a later trip of a shipment starts afresh."""
        trip = self.trip
        for name in ("fix_ts", "stop_start", "depart", "last_at", "eta"):
            getattr(trip, name)[ships] = NO_TS
        for name in ("fix_lat", "fix_lon", "speed", "start_km"):
            getattr(trip, name)[ships] = np.nan
        trip.stopped[ships], trip.dwell_ms[ships], trip.stops[ships] = False, 0, 0
        self.changed.update(ships.tolist())

    def view(self, shipments: np.ndarray) -> dict[str, list]:
        """Each shipment's ETA (ISO), None when it has none."""
        self.trip.ensure(int(shipments.max(initial=-1)) + 1)
        eta = self.trip.eta[shipments]
        text = iso_many(np.where(eta != NO_TS, eta, 0))
        return {"eta": [None if e == NO_TS else t
                        for e, t in zip(eta.tolist(), text, strict=True)]}

    def metrics(self) -> dict[str, float]:
        """Predictions made, deliveries learned from, and the accuracy of past ETAs."""
        if not self.learns:
            return {}
        model = self.model
        return {"eta_predictions": self.predictions, "eta_deliveries": model.deliveries,
                "eta_learned": model.learned, **model.accuracy.summary()}
