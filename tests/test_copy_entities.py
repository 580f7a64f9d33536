"""Pipeline.copy_entities: a provisional engine sharing the settled engine's name registries takes
over the settled state of some shipments and their devices, then behaves exactly as the settled
engine does for them; every other entity keeps its state, and no mutable object is shared."""

import copy

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainsight.alerts.book import Alert, AlertBook
from chainsight.contract.times import iso, parse_time
from chainsight.engine.core import Engine
from chainsight.engine.state import Columns, ShipmentInfo, State
from chainsight.geofence import FenceSet
from chainsight.geofence.tracker import (
    DEV,
    ENTERED,
    FENCE,
    FIRED,
    HEAP,
    INSIDE,
    RUN,
    RUN_TS,
    USED,
    VISIT,
)
from chainsight.rules.geofence import GeofenceRule
from chainsight.sim import simulate

CUTS = 8  # history cut points: eighths of the stream's time span
FAR = 2**62


@pytest.fixture(scope="module")
def world():
    """The smoke scenario in event-time order without duplicate ids (so that no event is late
    or a duplicate in one engine and not the other), its fences, and each shipment's devices."""
    sim = simulate("smoke", shipments=20, excursion_count=8, short_excursion_count=4,
                   silence_count=4, hub_dwell_max_min=10)
    seen, events = set(), []
    for event in sim:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            events.append((parse_time(event["ts"]), orjson.dumps(event), event))
    events.sort(key=lambda e: e[0])
    devices_of: dict[str, set[str]] = {}
    for _, _, event in events:
        devices = event.get("device_ids") or [event.get("device_id")]
        devices_of.setdefault(event["shipment_id"], set()).update(d for d in devices if d)
    owners = [d for devices in devices_of.values() for d in devices]
    assert len(owners) == len(set(owners))  # each device serves one shipment: closed groups
    return World(events, FenceSet.from_geojson(sim.fences()), sorted(devices_of.items()))


class World(tuple):
    """(events, fences, groups), with a short repr for Hypothesis' reports."""

    def __new__(cls, *parts):
        return super().__new__(cls, parts)

    def __repr__(self):
        return f"World({len(self[0])} events, {len(self[2])} shipments)"


def feed(engine, events, now):
    """Outputs (alerts and notifications) of `events` in batches of 200, then a flush."""
    lines = [line for _, line, _ in events]
    outs = [engine.process(lines[i:i + 200], now=now) for i in range(0, len(lines), 200)]
    outs.append(engine.flush())
    return [r for out in outs for r in out.alerts + out.notifications]


def engines(world, cut_a, cut_b, skipped=frozenset()):
    """Settled engine `a` fed the events before `cut_a` eighths of the span, provisional `b`
    (sharing a's registries) those before `cut_b` except the shipments in `skipped`; the time
    after both cuts; the `now` to decode with."""
    events, fences, _ = world
    first, last = events[0][0], events[-1][0]
    cut = [first + (last - first) * c // CUTS if c else first for c in (cut_a, cut_b)]
    now = last + 86_400_000
    a, b = Engine(fences=fences), Engine(fences=fences)
    b.settled.state = b.ingest.state = State.sharing_ids(a.state)  # as a provisional copy
    for engine in a, b:  # one ETA model, as a provisional pipeline shares the settled one's;
        engine.settled.eta.model = a.eta_model  # learning it would make it differ between
        engine.settled.eta.learns = False  # the engines' runs
    # The route tracker follows devices only once some shipment has a corridor (a condition
    # on all shipments, which a copy cannot make equal): give one to a shipment of neither.
    seed = orjson.dumps({"type": "order", "event_id": "seed", "shipment_id": "SEED",
                         "order_id": "SEED", "status": "created", "ts": iso(first - 1),
                         "corridor_id": fences.ids[-1]})
    for engine in a, b:
        engine.process([seed], now=now)
    feed(a, [e for e in events if e[0] < cut[0]], now)
    feed(b, [e for e in events if e[0] < cut[1] and e[2]["shipment_id"] not in skipped], now)
    return a, b, max(cut), now


def ids(engine, ships, devs):
    """Dense ids (int64 arrays) of these names, interned (in the shared registries) when
    unseen."""
    st = engine.state
    return (np.array([st.shipment_id(s) for s in ships], np.int64),
            np.array([st.device_id(d) for d in devs], np.int64))


def plain(x):
    """`x` with NaN as None, tuples as lists and sets sorted, to compare with ==."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    if isinstance(x, set):
        return sorted(x)
    return x


def rows(columns, ids):
    """The rows `ids` of `columns` (fill values where they have not grown yet)."""
    grown = copy.deepcopy(columns)
    grown.ensure(int(max(ids, default=-1)) + 1)
    return {name: getattr(grown, name)[ids].tolist() for name in grown.dump_state()}


def tracker_state(tracker, devs):
    """The slots of these devices and their dwell deadlines still to fire; but for list links,
    visit numbers and what a reused slot keeps of its last use (entered and fired of a pending
    enter, the start of a run of no fixes)."""
    data = tracker.dump_state()
    slots, heap, meta = data["slots"], data["heap"], data["meta"]
    live = slots[:meta[USED]]
    mine = live[np.isin(live[:, DEV], devs)].copy()
    mine[mine[:, INSIDE] == 0, ENTERED] = -1
    mine[mine[:, INSIDE] == 0, FIRED] = -1
    mine[mine[:, RUN] == 0, RUN_TS] = -1
    waits = sorted((int(deadline), int(slots[s, DEV]), int(slots[s, FENCE]))
                   for deadline, s, visit in heap[:meta[HEAP]].tolist()
                   if slots[s, DEV] in devs and slots[s, INSIDE] == 1 and slots[s, FIRED] == 0
                   and slots[s, VISIT] == visit)
    return {"slots": sorted(map(tuple, mine[:, [DEV, FENCE, INSIDE, RUN, RUN_TS, ENTERED, FIRED]]
                                .tolist())), "waits": waits}


def concerned(ship_names, dev_names):
    """Whether an alert of (shipment, device) is of these entities: of one of the shipments and
    (if it has one) one of the devices, else of one of the devices. Both, because a dwell that
    fires while the tracker takes another device's fix is given that fix's shipment (see
    GeofenceRule.on_rows), so a device not copied can raise an alert of a copied shipment."""
    def test(shipment, device):
        if shipment is None:
            return device in dev_names
        return shipment in ship_names and (device is None or device in dev_names)
    return test


def book_state(book, ship_names, dev_names):
    mine = concerned(ship_names, dev_names)
    alerts = {aid: {n: getattr(a, n) for n in Alert.__slots__}
              for aid, a in book.alerts.items() if mine(a.key[1], a.key[2])}
    return {"alerts": alerts,
            "open": sorted(a.alert_id for k, a in book.open_alerts.items() if mine(k[1], k[2])),
            "recent": sorted(a.alert_id for k, a in book.recent.items() if mine(k[1], k[2])),
            "timers": sorted((due, aid, timer) for due, _, aid, timer in book._timers
                             if aid in alerts and book.alerts[aid].due.get(timer) == due)}


def entity_state(engine, ships, devs):
    """Everything `engine` remembers of these shipments and devices (dense ids), as plain data."""
    st = engine.state
    ships, devs = ships.tolist(), devs.tolist()
    info = [st.info[s] if s < len(st.info) else ShipmentInfo() for s in ships]
    shipment = rows(st.shipment, ships)
    del shipment["moved_in"]  # numbered by each state's own segments
    out = {"shipment": shipment, "device": rows(st.device, devs),
           "info": [{slot: getattr(i, slot) for slot in ShipmentInfo.__slots__} for i in info],
           "book": book_state(engine.book, {st.shipments.names[s] for s in ships},
                              {st.devices.names[d] for d in devs})}
    for rule in engine.rules:
        part = out[rule.name] = {}
        for names, keys in ((rule.shipment_state, ships), (rule.device_state, devs)):
            for name in names:
                value = getattr(rule, name)
                part[name] = rows(value, keys) if isinstance(value, Columns) else \
                    {k: value[k] for k in keys if k in value}
        if isinstance(rule, GeofenceRule):
            part["tracker"] = tracker_state(rule.tracker, devs)
            part["route_tracker"] = tracker_state(rule.route_tracker, devs)
            part["gps_filter"] = rows(rule.gps_filter.prev, devs)
    return plain(out)


def choose(world, picks):
    """Names of the picked shipments and of their devices."""
    groups = world[2]
    picked = [groups[i % len(groups)] for i in sorted(picks)]
    return [s for s, _ in picked], sorted(d for _, devices in picked for d in devices)


@settings(max_examples=10, deadline=None)
@given(cut_a=st.integers(0, CUTS), cut_b=st.integers(0, CUTS),
       picks=st.sets(st.integers(0, 19), min_size=1, max_size=4), b_skips_them=st.booleans())
def test_after_a_copy_both_engines_continue_alike_for_the_copied_entities(
        world, cut_a, cut_b, picks, b_skips_them):
    ship_names, dev_names = choose(world, picks)
    a, b, after, now = engines(world, cut_a, cut_b, set(ship_names) if b_skips_them else ())
    ships, devs = ids(a, ship_names, dev_names)
    b.settled.copy_entities(a.settled, ships, devs)
    b.state.clock = a.state.clock  # the caller's part, with the stream's time
    for name in ("newest", "floor", "leaders", "business_newest"):
        setattr(b.reorder, name, copy.copy(getattr(a.reorder, name)))
    assert entity_state(b, ships, devs) == entity_state(a, ships, devs)
    rest = [e for e in world[0] if e[0] >= after and e[2]["shipment_id"] in ship_names]
    mine = concerned(set(ship_names), set(dev_names))
    got_a = [r for r in feed(a, rest, now) if mine(r["shipment_id"], r["device_id"])]
    got_b = [r for r in feed(b, rest, now) if mine(r["shipment_id"], r["device_id"])]
    assert got_b == got_a
    assert entity_state(b, ships, devs) == entity_state(a, ships, devs)
    views_a, views_b = a.shipment_views(ships), b.shipment_views(ships)
    for view in (*views_a.values(), *views_b.values()):
        del view["open_alerts"]  # compared in the book's state, but for misattributed dwells
    assert plain(views_b) == plain(views_a)


def test_the_copy_reaches_alerts_trackers_and_rule_state(world):
    """The examples above are not vacuous: the copied state has alerts, fence visits, dwell
    deadlines and sensor links, and differs from what the provisional engine had."""
    groups = world[2]
    a, b, _, _ = engines(world, 4, 2)
    ship_names = [s for s, _ in groups]
    dev_names = sorted(d for _, devices in groups for d in devices)
    ships, devs = ids(a, ship_names, dev_names)
    before, settled = entity_state(b, ships, devs), entity_state(a, ships, devs)
    assert before != settled
    assert settled["book"]["open"] and settled["book"]["timers"]
    assert settled["geofence"]["tracker"]["slots"] and settled["geofence"]["tracker"]["waits"]
    assert settled["silence"]["sensors_of"] and settled["door"]["sensors_of"]
    b.settled.copy_entities(a.settled, ships, devs)
    assert entity_state(b, ships, devs) == settled


@settings(max_examples=6, deadline=None)
@given(cut_a=st.integers(1, CUTS), cut_b=st.integers(1, CUTS),
       picks=st.sets(st.integers(0, 19), min_size=1, max_size=6))
def test_entities_not_copied_keep_their_state(world, cut_a, cut_b, picks):
    ship_names, dev_names = choose(world, picks)
    a, b, _, _ = engines(world, cut_a, cut_b)
    ships, devs = ids(a, ship_names, dev_names)
    every_ship = np.arange(len(a.state.shipments))
    every_dev = np.arange(len(a.state.devices))
    other_ships, other_devs = np.setdiff1d(every_ship, ships), np.setdiff1d(every_dev, devs)
    before = entity_state(b, other_ships, other_devs)
    b.settled.copy_entities(a.settled, ships, devs)
    assert entity_state(b, other_ships, other_devs) == before


def mutable_parts(engine, ships, devs):
    """The mutable objects that hold the state of these entities."""
    st, found = engine.state, []

    def walk(x):
        if isinstance(x, Alert | ShipmentInfo) or hasattr(x, "__struct_fields__"):  # Lot
            found.append(x)
            values = [getattr(x, n) for n in getattr(x, "__struct_fields__", x.__slots__)]
        elif isinstance(x, dict):
            found.append(x)
            values = list(x.values())
        elif isinstance(x, list | set | tuple):
            if not isinstance(x, tuple):
                found.append(x)
            values = x
        else:
            return
        for v in values:
            walk(v)

    names = {st.shipments.names[s] for s in ships.tolist()}
    walk([st.info[s] for s in ships.tolist()])
    walk([a for a in engine.book.alerts.values() if a.shipment_id in names])
    for rule in engine.rules:
        for name in rule.shipment_state:
            value = getattr(rule, name)
            if isinstance(value, dict):
                walk([value[s] for s in ships.tolist() if s in value])
    return found


def test_no_mutable_object_is_shared_and_the_settled_engine_moves_on_alone(world):
    events, _, groups = world
    a, b, after, now = engines(world, 6, 3)
    ship_names = [s for s, _ in groups[::3]]
    dev_names = sorted(d for _, devices in groups[::3] for d in devices)
    ships, devs = ids(a, ship_names, dev_names)
    b.settled.copy_entities(a.settled, ships, devs)
    copied = entity_state(b, ships, devs)
    parts_a, parts_b = mutable_parts(a, ships, devs), mutable_parts(b, ships, devs)
    assert {type(o) for o in parts_b} >= {Alert, ShipmentInfo, dict, set}
    assert not set(map(id, parts_a)) & set(map(id, parts_b))
    for rule_a, rule_b in zip(a.rules, b.rules, strict=True):
        for name in rule_a.shipment_state + rule_a.device_state:
            if isinstance(getattr(rule_a, name), Columns):
                for column in getattr(rule_a, name).dump_state():
                    assert not np.shares_memory(getattr(getattr(rule_a, name), column),
                                                getattr(getattr(rule_b, name), column))
    for alert in a.book.alerts.values():  # what a user or a later batch could change in place
        alert.details["touched"] = True
        alert.lifecycle["touched"] = True
        alert.due.clear()
    for info in a.state.info:
        info.status = "touched"
        if info.lot is not None:
            info.lot.certificates.clear()
    feed(a, [e for e in events if e[0] >= after], now)
    assert entity_state(b, ships, devs) == copied


def test_columns_copy_rows_grows_and_fills_rows_the_source_lacks():
    src, dst = Columns(x=(np.int64, -1)), Columns(x=(np.int64, -1))
    src.ensure(3)
    src.x[:3] = [10, 11, 12]
    dst.ensure(2)
    dst.x[:2] = [20, 21]
    dst.copy_rows(src, np.array([1, 200], np.int64))
    assert len(dst) >= 201 and dst.x[0] == 20 and dst.x[1] == 11 and dst.x[200] == -1
    dst.copy_rows(src, np.array([], np.int64))
    assert dst.x[1] == 11


def test_a_book_without_audit_emits_the_same_records_and_keeps_no_trail():
    books = AlertBook(escalate_ms=60_000), AlertBook(escalate_ms=60_000, audited=False)
    for book in books:
        book.open("temperature_excursion", "S1", "T1", None, 0, "warning", {"max_c": 9.0})
        book.on_clock(120_000)
        book.resolve("temperature_excursion", "S1", "T1", None, 180_000)
    (alerts, notes, audit), (alerts2, notes2, audit2) = (book.collect() for book in books)
    assert alerts2 == alerts and notes2 == notes and len(alerts) == 2 and len(notes) == 1
    assert len(audit) == 3 and audit2 == [] and len(books[1].audit) == 0
